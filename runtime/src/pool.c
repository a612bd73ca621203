/*
 * pool.c - the process pool's public API: options, new/start/resize/close,
 * dispatch and stats, plus the small helpers the pool's files share and the
 * pool-wide ends (failing, and finishing a close).
 *
 * A pool has `size` slots; a slot runs one process at a time (a `proc`,
 * whose lifecycle is pool_proc.c's and whose frames are pool_frames.c's) and
 * keeps the counters and the restart state that outlive it. Dispatch hands a
 * task to the least loaded ready proc (ties round-robin), and skips a proc
 * that is retiring, has a task past its deadline, or whose stdin queue is
 * congested (the transport's high watermark) until it drains. Resize adds
 * slots (memory first, so that a failure leaves the pool as it was) and
 * stops the procs of removed ones like a recycle does: Shutdown, an end the
 * pool asked for, so no restart decision.
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
#include <time.h>
#include <uv.h>

#include "pool_internal.h"
#include "ratchet/alloc.h"
#include "ratchet/clock.h"
#include "ratchet/codec.h"
#include "ratchet/error.h"
#include "ratchet/pool.h"
#include "ratchet/rng.h"
#include "ratchet/transport.h"

#define MAX_PIPELINE 1024u
#define MAX_MS       3600000u

/* ---- small helpers ---------------------------------------------------- */

void ratchet__pool_fmt(char *dst, size_t cap, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  vsnprintf(dst, cap, f, ap);
  va_end(ap);
}

void ratchet__pool_set_cause(proc *p, const char *f, ...) {
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

void ratchet__pool_emit(ratchet_pool *pool, const ratchet_pool_event *ev) {
  if (pool->o.on_event != NULL)
    pool->o.on_event(pool, ev);
}

void ratchet__pool_event_init(ratchet_pool_event *ev,
                              ratchet_pool_event_type type, const proc *p) {
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

/* ---- stopping, failing and finishing the pool -------------------------- */

static void slot_timer_closed(uv_handle_t *h) {
  slot *s = h->data;
  ratchet_pool *pool = s->pool;
  pool->timers_open--;
  ratchet__pool_maybe_finish(pool);
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
      ratchet__pool_proc_stop(p, pool->o.close_grace_ms);
}

void ratchet__pool_fail(ratchet_pool *pool, const char *msg) {
  if (pool->state == S_FAILED)
    return;
  pool->state = S_FAILED;
  pool->st.failed = true;
  pool_stop_all(pool);
  ratchet_pool_event ev;
  ratchet__pool_event_init(&ev, RATCHET_POOL_EVENT_FAILED, NULL);
  ev.message = msg;
  ratchet__pool_emit(pool, &ev);
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
  ratchet__pool_maybe_finish(pool);
}

void ratchet__pool_maybe_finish(ratchet_pool *pool) {
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
   * only once nothing else can fail. (rc is 0 here: set it again, or a
   * failed allocation below would return success with a freed pool.) */
  rc = -ENOMEM;
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
  /* No handle is open yet; the slots array (if any) is zeroed past what
   * was allocated, so freeing all o->size entries is safe. */
  if (pool->slots != NULL)
    pool->n_slots = o->size;
  pool_free(pool);
  return rc;
}

int ratchet_pool_start(ratchet_pool *p) {
  if (p->closing)
    return -EPIPE;
  if (p->state != S_NEW)
    return -EALREADY;
  int rc = uv_signal_start(&p->sigchld, ratchet__pool_sigchld_cb, SIGCHLD);
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
    rc = ratchet__pool_slot_spawn(s);
    if (rc != 0 && i == 0) {
      p->state = S_NEW;
      for (uint32_t j = 0; j < p->size; j++)
        p->slots[j]->removed = true;
      uv_signal_stop(&p->sigchld);
      return rc;
    }
    if (rc != 0)
      ratchet__pool_slot_start_failed(s, rc);
  }
  return 0;
}

/* Ready, not retiring, no task past its deadline (its Cancel is pending),
 * and its stdin not congested (until ratchet__pool_on_drain). */
static bool proc_has_room(const proc *p) {
  return p != NULL && p->state == P_READY && p->t_open && !p->retiring &&
         ratchet_uv_transport_writable(p->t) && p->n_overdue == 0 &&
         p->n_inflight < p->capacity && !ratchet_uv_transport_congested(p->t);
}

/* A task's deadline in loop time: task_timeout_ms from now, or its own
 * deadline_unix_ms, whichever comes first; 0 for none. The Cancel for a
 * deadline must not reach the worker before the worker itself sees the
 * deadline pass, or the attempt ends CANCELLED instead of TIMEOUT: so the
 * loop's time is brought up to date first (it is the start of this loop
 * iteration, maybe milliseconds old) and the deadline, a whole
 * millisecond, is rounded up by one. */
static uint64_t task_deadline_ms(ratchet_pool *pool,
                                 const Ratchet__V1__Task *task) {
  if (task->deadline_unix_ms != 0)
    uv_update_time(pool->loop);
  uint64_t now = uv_now(pool->loop), d = 0;
  if (pool->o.task_timeout_ms != 0)
    d = now + pool->o.task_timeout_ms;
  if (task->deadline_unix_ms != 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t wall =
        (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    uint64_t own =
        now + 1 +
        (task->deadline_unix_ms > wall ? task->deadline_unix_ms - wall : 0);
    if (own == 0)
      own = 1;
    if (d == 0 || own < d)
      d = own;
  }
  return d;
}

bool ratchet_pool_has_room(const ratchet_pool *pool, uint32_t worker_id) {
  if (pool == NULL || pool->closing || pool->state != S_RUNNING)
    return false;
  if (worker_id != RATCHET_POOL_ANY)
    return worker_id < pool->n_slots && !pool->slots[worker_id]->removed &&
           proc_has_room(pool->slots[worker_id]->cur);
  for (uint32_t k = 0; k < pool->n_slots; k++)
    if (!pool->slots[k]->removed && proc_has_room(pool->slots[k]->cur))
      return true;
  return false;
}

/* Cancelling reuses the deadline machinery: the task becomes due now, so
 * the worker is sent Cancel at once and, if no Result follows within
 * kill_grace_ms, is killed like any worker with an overdue task. */
int ratchet_pool_cancel(ratchet_pool *pool, uint64_t task_id) {
  if (pool == NULL)
    return -EINVAL;
  for (uint32_t k = 0; k < pool->n_slots; k++) {
    proc *p = pool->slots[k]->cur;
    if (p == NULL)
      continue;
    for (uint32_t i = 0; i < p->n_inflight; i++) {
      inflight *in = &p->inflight[i];
      if (in->id != task_id)
        continue;
      if (in->overdue)
        return -EALREADY;
      in->deadline_ms = uv_now(pool->loop);
      if (in->deadline_ms == 0)
        in->deadline_ms = 1;
      ratchet__pool_proc_schedule(p);
      return 0;
    }
  }
  return -ENOENT;
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
  if (rc < 0 && !ratchet_uv_transport_writable(p->t)) {
    /* The worker's stdin is broken (EPIPE, ...): it is dying, and its exit
     * and EOF will be handled as usual. That is no fault of the task, so
     * the owner is not told about it: the transport now reports the worker
     * unwritable, so another worker is tried, or the owner hears -EAGAIN
     * and tries later. Errors that leave the transport writable are about
     * the task (RATCHET_EFRAME_TOO_BIG, -ENOMEM) and are returned. */
    goto again;
  }
  if (rc < 0)
    return rc;
  inflight *in = &p->inflight[p->n_inflight++];
  in->id = task->id;
  in->crashes = crash_count;
  in->deadline_ms = task_deadline_ms(pool, task);
  in->overdue = false;
  ratchet__pool_proc_schedule(p);
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
      ratchet__pool_proc_stop(s->cur, pool->o.close_grace_ms);
  }
  for (uint32_t i = old; i < size; i++) {
    slot *s = pool->slots[i];
    s->removed = false;
    s->flaps = 0;
    s->prev_delay_ns = 0;
    if (pool->state == S_RUNNING)
      ratchet__pool_slot_start(s);
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
  ratchet__pool_maybe_finish(pool);
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
