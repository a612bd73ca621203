/*
 * pool_frames.c - what comes back from a worker: its frames (Ready, Result,
 * Pong, Log, Error), the end of its stdout, the outcomes the owner is told
 * about, recycling, and finalising a proc with the restart decision.
 *
 * A Result ends a task in flight with an outcome; a Pong answers the
 * pending Ping. Recycling retires a proc (no new tasks) when it reaches its
 * task count - drawn per proc from the pool's seeded rng - or its RSS limit;
 * once it holds no task it is stopped like a resize stops one (Shutdown, an
 * end the pool asked for, so no restart decision) and its slot starts a new
 * proc at once. Anything the protocol does not allow is a protocol error:
 * the pool closes its ends and the escalation follows.
 *
 * A Result may still sit in the pipe when the exit is seen, so a proc is
 * finalised - its lost outcomes, the EXITED event, the restart decision -
 * only once both its exit (pool_proc.c) and the end of its stdout are known.
 * Finalising changes all state first and calls the owner's callbacks last,
 * so a callback may call dispatch, resize or close.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>
#include <uv.h>

#include "pool_internal.h"
#include "ratchet/clock.h"
#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/pool.h"
#include "ratchet/rng.h"
#include "ratchet/transport.h"

/* ---- describing an exit ------------------------------------------------ */

static void describe_exit(const proc *p, char *buf, size_t cap) {
  if (p->term_signal != 0)
    ratchet__pool_fmt(
        buf, cap, "was killed by signal %d (SIG%s)%s", p->term_signal,
        sigabbrev_np(p->term_signal) ? sigabbrev_np(p->term_signal) : "?",
        p->core_dumped ? ", core dumped" : "");
  else
    ratchet__pool_fmt(buf, cap, "exited with status %d", p->exit_status);
}

/* ---- the protocol ----------------------------------------------------- */

static void proc_protocol_error(proc *p, int err, const char *text) {
  ratchet__pool_set_cause(p, "broke the protocol: %s", text);
  p->protocol_error = true;
  p->state = P_DEAD;
  if (p->t_open)
    (void)ratchet_uv_transport_send_error(p->t, err, text);
  /* Closing our ends tells the worker to stop; it gets kill_grace_ms to do
   * so before SIGTERM. The rest of its stdout is meaningless. */
  ratchet__pool_proc_close_transport(p);
  p->eof = true;
  if (p->kill_stage == 0) {
    p->kill_stage = 1;
    ratchet__pool_proc_arm(p, T_ESCALATE, p->pool->o.kill_grace_ms);
  }
  ratchet__pool_proc_try_finalize(p);
}

/* The worker's resident set in KiB from /proc/<pid>/statm, or 0. */
static uint64_t read_rss_kb(pid_t pid) {
  char path[64];
  ratchet__pool_fmt(path, sizeof path, "/proc/%d/statm", (int)pid);
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
    ratchet__pool_fmt(p->retire_why, sizeof p->retire_why,
                      "its RSS of %llu KiB is above max_rss_kb %llu",
                      (unsigned long long)rss,
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
  ratchet__pool_proc_stop(p, pool->o.close_grace_ms);
  ratchet_pool_event ev;
  ratchet__pool_event_init(&ev, RATCHET_POOL_EVENT_RECYCLED, p);
  ev.tasks_done = p->tasks_done;
  ev.max_rss_kb = p->rss_kb;
  ev.message = p->retire_why;
  ratchet__pool_emit(pool, &ev);
  if (!pool->closing && pool->state == S_RUNNING && !s->removed &&
      s->cur == NULL && !s->restart_pending)
    ratchet__pool_slot_start(s);
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
  ratchet__pool_proc_schedule(p);
  ratchet_pool_event ev;
  ratchet__pool_event_init(&ev, RATCHET_POOL_EVENT_READY, p);
  ratchet__pool_emit(pool, &ev);
}

static void on_result(proc *p, const Ratchet__V1__Result *r) {
  ratchet_pool *pool = p->pool;
  uint32_t i = 0;
  while (i < p->n_inflight && p->inflight[i].id != r->id)
    i++;
  if (i == p->n_inflight) {
    char text[96];
    ratchet__pool_fmt(text, sizeof text,
                      "a Result for task %llu, which is not in flight",
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
    ratchet__pool_fmt(p->retire_why, sizeof p->retire_why,
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
  ratchet__pool_proc_schedule(p);
}

static void on_pong(proc *p, const Ratchet__V1__Pong *pong) {
  if (pong->seq == 0 || pong->seq > p->ping_seq) {
    char text[96];
    ratchet__pool_fmt(text, sizeof text,
                      "a Pong for Ping %llu, which was not sent",
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
  ratchet__pool_proc_schedule(p);
}

void ratchet__pool_on_frame(ratchet_uv_transport *t,
                            const Ratchet__V1__Frame *f) {
  proc *p = ratchet_uv_transport_data(t);
  /* Frames after an exit are still read (a Result may have been written
   * just before it), but nothing after a protocol error or a hang. */
  if (p->protocol_error || (p->state == P_DEAD && !p->ready_seen))
    return;
  if (!p->ready_seen && f->msg_case != RATCHET__V1__FRAME__MSG_READY &&
      f->msg_case != RATCHET__V1__FRAME__MSG_ERROR) {
    char text[96];
    ratchet__pool_fmt(text, sizeof text, "a %s before Ready",
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
    ratchet__pool_set_cause(p, "sent Error{%s}: %s",
                            ratchet_codec_error_code_name(f->error->code),
                            f->error->text != NULL ? f->error->text : "");
    break;
  default: {
    char text[96];
    ratchet__pool_fmt(text, sizeof text, "an unexpected %s",
                      ratchet_codec_msg_name(f->msg_case));
    proc_protocol_error(p, RATCHET_EPROTO_UNEXPECTED, text);
    break;
  }
  }
}

void ratchet__pool_on_end(ratchet_uv_transport *t, int err) {
  proc *p = ratchet_uv_transport_data(t);
  if (err != RATCHET_EEOF && err != RATCHET_EPEER) {
    ratchet__pool_set_cause(p, "broke the protocol: %s", ratchet_strerror(err));
    p->protocol_error = true;
  } else if (err == RATCHET_EPEER) {
    p->protocol_error = true;
  }
  ratchet__pool_proc_close_transport(p);
  p->eof = true;
  p->state = P_DEAD;
  /* A worker whose stdout ended normally exits next; give it kill_grace_ms
   * before SIGTERM. */
  if (!p->reaped && p->kill_stage == 0 && p->timer_use != T_ESCALATE) {
    p->kill_stage = 1;
    ratchet__pool_proc_arm(p, T_ESCALATE, p->pool->o.kill_grace_ms);
  }
  ratchet__pool_proc_try_finalize(p);
}

/* The send queue fell below the low watermark: proc_has_room (pool.c) reads the
 * transport's congestion flag, so dispatch may choose this worker again. */
void ratchet__pool_on_drain(ratchet_uv_transport *t) {
  proc *p = ratchet_uv_transport_data(t);
  p->pool->st.drains++;
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
  ratchet__pool_slot_start(s);
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
    ratchet__pool_fmt(
        fail_msg, cap,
        "worker %u failed %u times in a row without making progress; "
        "last: %s",
        (unsigned)s->id, (unsigned)s->flaps, what);
    return false;
  }
  if (ratchet__intensity_note(&pool->intensity, ratchet_now_ns())) {
    ratchet__pool_fmt(
        fail_msg, cap,
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

void ratchet__pool_proc_try_finalize(proc *p) {
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
    ratchet__pool_fmt(what, sizeof what, "%s (%s%s)", p->cause, exit_text,
                      p->ready_seen ? "" : " before Ready");
  else
    ratchet__pool_fmt(what, sizeof what, "%s%s", exit_text,
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
  ratchet__pool_event_init(&ev, RATCHET_POOL_EVENT_EXITED, p);
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
  ratchet__pool_emit(pool, &ev);

  char reason[TEXT_MAX + 200];
  ratchet__pool_fmt(reason, sizeof reason, "worker %u (pid %d) %s",
                    (unsigned)s->id, (int)p->pid, what);
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
    ratchet__pool_event_init(&rev, RATCHET_POOL_EVENT_RESTARTING, p);
    rev.delay_ns = delay;
    rev.message = what;
    ratchet__pool_emit(pool, &rev);
  } else if (fail_msg[0] != '\0') {
    ratchet__pool_fail(pool, fail_msg);
  }

  /* Linger for the last of stderr; the group is dead, so it ends soon. */
  if (p->err_open)
    ratchet__pool_proc_arm(p, T_LINGER, pool->o.kill_grace_ms);
  ratchet__pool_proc_release(p);
}

/* A start that produced no process: counts as an end before Ready. */
void ratchet__pool_slot_start_failed(slot *s, int err) {
  ratchet_pool *pool = s->pool;
  char what[TEXT_MAX], fail_msg[TEXT_MAX + 320];
  ratchet__pool_fmt(what, sizeof what, "could not start: %s",
                    ratchet_strerror(err));
  fail_msg[0] = '\0';
  uint64_t delay = 0;
  if (supervise(pool, s, RATCHET__END_ABNORMAL, true, what, &delay, fail_msg,
                sizeof fail_msg)) {
    ratchet_pool_event ev;
    ratchet__pool_event_init(&ev, RATCHET_POOL_EVENT_RESTARTING, NULL);
    ev.worker_id = s->id;
    ev.generation = s->generation;
    ev.delay_ns = delay;
    ev.message = what;
    ratchet__pool_emit(pool, &ev);
  } else if (fail_msg[0] != '\0') {
    ratchet__pool_fail(pool, fail_msg);
  }
}
