/*
 * orch.c - the life of a task in the orchestrator: submit, wait, dispatch,
 * answer, retry or finish, and the one completion callback.
 *
 * Every state change runs the systems registered for that lifecycle point
 * (built-ins first, orch_systems.c), then acts on their verdict. Waiting
 * tasks sit in their pool's priority FIFOs, in a worker's wait list (pinned
 * or bound by affinity to a worker that is full), or on the timer heap;
 * tasks with an expiry or deadline are also on the expiry heap so that
 * they end on time even when no worker frees up. One uv_timer serves both
 * heaps.
 *
 * Dispatch runs from a uv_idle handle ("kick"), never inside submit or an
 * outcome callback: a burst of submits, or of Results from one read, is
 * then dispatched in one pass, and the pool's transport writes the whole
 * batch of Task frames with one write. Final outcomes decided inside an
 * API call (a cache hit at submit, a cancel) wait on the `finishing` list
 * and are delivered from the loop as well, so a callback never runs inside
 * submit or cancel.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orch_internal.h"
#include "ratchet/alloc.h"
#include "ratchet/clock.h"
#include "ratchet/error.h"

/* ------------------------------------------------------------------ lists */

void ratchet__list_push_back(task_list *l, task *t) {
  t->next = NULL;
  t->prev = l->tail;
  if (l->tail != NULL)
    l->tail->next = t;
  else
    l->head = t;
  l->tail = t;
  l->len++;
}

void ratchet__list_push_front(task_list *l, task *t) {
  t->prev = NULL;
  t->next = l->head;
  if (l->head != NULL)
    l->head->prev = t;
  else
    l->tail = t;
  l->head = t;
  l->len++;
}

void ratchet__list_remove(task_list *l, task *t) {
  if (t->prev != NULL)
    t->prev->next = t->next;
  else
    l->head = t->next;
  if (t->next != NULL)
    t->next->prev = t->prev;
  else
    l->tail = t->prev;
  t->prev = t->next = NULL;
  l->len--;
}

/* ---------------------------------------------------------------- helpers */

void ratchet__orch_error(ratchet_orch *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(o->last_error, sizeof o->last_error, fmt, ap);
  va_end(ap);
}

uint64_t ratchet__orch_random(ratchet_orch *o) {
  return ratchet_rng_next(&o->rng);
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

task_ext *ratchet__orch_ext(ratchet_orch *o, task *t) {
  (void)o;
  if (t->ext == NULL) {
    t->ext = ratchet_calloc(1, sizeof *t->ext);
    if (t->ext != NULL) {
      t->ext->pin_pool = RATCHET_NO_PIN;
      t->ext->pin_worker = RATCHET_NO_PIN;
    }
  }
  return t->ext;
}

void ratchet__final_clear(final_out *f) {
  if (f->stdout_path != NULL)
    (void)unlink(f->stdout_path);
  if (f->stderr_path != NULL)
    (void)unlink(f->stderr_path);
  ratchet_free(f->stdout_path);
  ratchet_free(f->stderr_path);
  ratchet_free(f->error);
  ratchet_free(f->output);
  ratchet_free(f->stderr_data);
  memset(f, 0, sizeof *f);
}

char *ratchet__dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = ratchet_malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}

void *ratchet__dup_bytes(const void *p, size_t n) {
  if (n == 0)
    return NULL;
  void *d = ratchet_malloc(n);
  if (d != NULL)
    memcpy(d, p, n);
  return d;
}

char *ratchet__spill_link(const char *path) {
  static atomic_uint_fast64_t n;
  if (path == NULL)
    return NULL;
  size_t len = strlen(path) + 32;
  char *p = ratchet_malloc(len);
  if (p == NULL)
    return NULL;
  snprintf(p, len, "%s.%llu", path,
           (unsigned long long)atomic_fetch_add(&n, 1));
  if (link(path, p) != 0) {
    ratchet_free(p);
    return NULL;
  }
  return p;
}

static void ext_free(task_ext *e) {
  if (e == NULL)
    return;
  ratchet_free(e->affinity);
  ratchet_free(e->rate_group);
  ratchet_free((void *)(uintptr_t)e->dedupe.key);
  ratchet_free((void *)(uintptr_t)e->cache.salt);
  ratchet_free(e->components);
  if (e->metadata != NULL) {
    for (size_t i = 0; e->metadata[i] != NULL; i++)
      ratchet_free(e->metadata[i]);
    ratchet_free(e->metadata);
  }
  ratchet__final_clear(&e->last);
  ratchet_free(e);
}

void ratchet__task_free(task *t) {
  ext_free(t->ext);
  ratchet_free(t);
}

void ratchet__orch_publish_task(ratchet_orch *o, ratchet_event_type type,
                                const task *t, ratchet_status status,
                                uint64_t delay_ns, uint64_t duration_ns,
                                const char *group, const char *message) {
  if (!ratchet_events_wanted(o->events, type))
    return;
  ratchet_event ev = RATCHET_EVENT_INIT;
  ev.type = type;
  ev.task_id = t->id;
  ev.kind = ratchet__kind_name(t->kind);
  ev.attempt = t->attempts;
  if (t->worker >= 0) {
    ev.pool = t->pool;
    ev.worker = t->worker;
  }
  ev.status = (int)status;
  ev.delay_ns = delay_ns;
  ev.duration_ns = duration_ns;
  ev.group = group != NULL ? group : "";
  ev.message = message != NULL ? message : "";
  if (type == RATCHET_EV_COALESCED && t->ext != NULL)
    ev.related_id = t->ext->leader_id;
  ratchet_events_publish(o->events, &ev);
}

void ratchet__orch_kick(ratchet_orch *o) {
  if (!o->kick_active && !o->close_started) {
    uv_idle_start(&o->kick, ratchet__orch_kick_cb);
    o->kick_active = true;
  }
}

/* -------------------------------------------------------------- the timer */

void ratchet__orch_timer_cb(uv_timer_t *h);

static uint64_t heap_head_due(const ratchet__heap *h) {
  ratchet__heap_node *n = ratchet__heap_peek(h);
  return n != NULL ? n->due : 0;
}

/* Arms the uv timer for the earliest of the two heaps' heads. */
void ratchet__orch_arm_timer(ratchet_orch *o) {
  if (o->close_started)
    return;
  uint64_t a = heap_head_due(&o->timers), b = heap_head_due(&o->expiries);
  uint64_t due = a == 0 ? b : b == 0 ? a : (a < b ? a : b);
  if (due == 0) {
    if (o->timer_due != 0)
      uv_timer_stop(&o->timer);
    o->timer_due = 0;
    return;
  }
  if (due == o->timer_due)
    return;
  uint64_t now = ratchet_now_ns();
  uint64_t ms = due > now ? (due - now + 999999u) / 1000000u : 0;
  uv_timer_start(&o->timer, ratchet__orch_timer_cb, ms, 0);
  o->timer_due = due;
}

/* ------------------------------------------------------------ the waiting */

static orch_pool *pool_of(ratchet_orch *o, const task *t) {
  return o->pools[t->pool];
}

static task_list *prio_list(orch_pool *op, const task *t) {
  return &op->prio[t->priority - RATCHET_PRIORITY_MIN];
}

/* Which worker slot the task must wait for, or -1 for any. */
static int32_t bound_worker(ratchet_orch *o, task *t) {
  task_ext *e = t->ext;
  if (e == NULL)
    return -1;
  if (e->pin_worker != RATCHET_NO_PIN)
    return e->pin_worker;
  if (e->affinity != NULL) {
    uintptr_t v = (uintptr_t)ratchet__strmap_get(o->affinity, e->affinity,
                                                 e->affinity_len);
    if (v != 0 && ((v - 1) >> 16) == t->pool)
      return (int32_t)((v - 1) & 0xffffu);
  }
  return -1;
}

static int pinned_list_reserve(orch_pool *op, uint32_t w) {
  if (w < op->n_pinned_slots)
    return 0;
  uint32_t n = op->n_pinned_slots ? op->n_pinned_slots : 4;
  while (n <= w)
    n *= 2;
  task_list *v = ratchet_realloc(op->pinned, n * sizeof *v);
  if (v == NULL)
    return -ENOMEM;
  memset(v + op->n_pinned_slots, 0, (n - op->n_pinned_slots) * sizeof *v);
  op->pinned = v;
  op->n_pinned_slots = n;
  return 0;
}

void ratchet__orch_expiry_track(ratchet_orch *o, task *t) {
  task_ext *e = t->ext;
  if (e == NULL || ratchet__heap_contains(&e->expiry))
    return;
  uint64_t due = t->first_dispatch_ns == 0 ? e->expire_at : 0;
  if (e->deadline_at != 0 && (due == 0 || e->deadline_at < due))
    due = e->deadline_at;
  if (due == 0)
    return;
  e->expiry.due = due;
  e->owner = t;
  if (ratchet__heap_push(&o->expiries, &e->expiry) == 0)
    ratchet__orch_arm_timer(o);
}

void ratchet__orch_expiry_untrack(ratchet_orch *o, task *t) {
  if (t->ext != NULL && ratchet__heap_contains(&t->ext->expiry))
    ratchet__heap_remove(&o->expiries, &t->ext->expiry);
}

/* Puts a task (not waiting anywhere) into its pool's FIFO, or the wait list
 * of the worker it is bound to. */
void ratchet__orch_enqueue(ratchet_orch *o, task *t, bool front) {
  orch_pool *op = pool_of(o, t);
  if (op->failed && !o->closing) {
    /* Nothing will serve it: a retry, a redispatch or a delayed task of a
     * pool that gave up ends here. */
    t->state = TS_NEW;
    ratchet__orch_finish_with(o, t, RATCHET_STATUS_LOST, op->fail_reason);
    return;
  }
  int32_t w = bound_worker(o, t);
  if (w >= 0 && pinned_list_reserve(op, (uint32_t)w) == 0) {
    task_list *l = &op->pinned[w];
    if (front)
      ratchet__list_push_front(l, t);
    else
      ratchet__list_push_back(l, t);
    t->state = TS_PINNED;
    op->pinned_total++;
  } else {
    task_list *l = prio_list(op, t);
    if (front)
      ratchet__list_push_front(l, t);
    else
      ratchet__list_push_back(l, t);
    t->state = TS_QUEUED;
    op->queued++;
  }
  o->waiting++;
  ratchet__orch_expiry_track(o, t);
  ratchet__orch_kick(o);
}

/* Puts a task on the timer heap until due. */
int ratchet__orch_schedule(ratchet_orch *o, task *t, uint64_t due, bool front) {
  t->timer.due = due;
  t->retry_front = front;
  if (ratchet__heap_push(&o->timers, &t->timer) != 0)
    return -ENOMEM; /* the caller ends the task: it cannot wait */
  t->state = TS_TIMED;
  o->waiting++;
  o->timed++;
  ratchet__orch_expiry_track(o, t);
  ratchet__orch_arm_timer(o);
  return 0;
}

/* Takes a task out of wherever it waits. */
void ratchet__orch_unwait(ratchet_orch *o, task *t) {
  orch_pool *op = pool_of(o, t);
  switch ((task_state)t->state) {
  case TS_QUEUED:
    ratchet__list_remove(prio_list(op, t), t);
    op->queued--;
    o->waiting--;
    break;
  case TS_PINNED: {
    int32_t w = -1;
    for (uint32_t i = 0; i < op->n_pinned_slots && w < 0; i++) {
      for (task *x = op->pinned[i].head; x != NULL; x = x->next)
        if (x == t) {
          w = (int32_t)i;
          break;
        }
    }
    if (w >= 0) {
      ratchet__list_remove(&op->pinned[w], t);
      op->pinned_total--;
      o->waiting--;
    }
    break;
  }
  case TS_TIMED:
    ratchet__heap_remove(&o->timers, &t->timer);
    o->timed--;
    o->waiting--;
    ratchet__orch_arm_timer(o);
    break;
  default:
    break;
  }
  ratchet__orch_expiry_untrack(o, t);
}

/* ------------------------------------------------------------- the finish */

static void deliver(ratchet_orch *o, task *t, final_out *f);

/* The result a task's callback sees. */
static void fill_result(const ratchet_orch *o, const task *t,
                        const final_out *f, ratchet_orch_result *r) {
  (void)o;
  memset(r, 0, sizeof *r);
  r->id = t->id;
  r->kind = ratchet__kind_name(t->kind);
  r->status = f->status;
  r->output = f->output;
  r->output_len = f->output_len;
  r->error = f->error != NULL ? f->error : "";
  r->stderr_data = f->stderr_data;
  r->stderr_len = f->stderr_len;
  r->stdout_path = f->stdout_path;
  r->stderr_path = f->stderr_path;
  r->exit_code = f->exit_code;
  r->term_signal = f->term_signal;
  r->core_dumped = f->core_dumped;
  r->attempts = t->attempts;
  r->crashes = t->crashes;
  r->cached = f->cached;
  r->coalesced = t->ext != NULL && t->ext->leader_id != 0;
  r->related_id = r->coalesced     ? t->ext->leader_id
                  : t->ext != NULL ? t->ext->parent_id
                                   : 0;
  r->pool = t->worker >= 0 ? (int32_t)t->pool : -1;
  r->worker = t->worker;
  r->submitted_ns = t->submitted_ns;
  r->first_dispatch_ns = t->first_dispatch_ns;
  r->finished_ns = ratchet_now_ns();
  r->run_ns = f->run_ns;
  r->user_cpu_us = f->user_cpu_us;
  r->sys_cpu_us = f->sys_cpu_us;
  r->max_rss_kb = f->max_rss_kb;
}

/* Runs the FINAL systems, releases followers, calls back, frees. */
static void deliver(ratchet_orch *o, task *t, final_out *f) {
  ratchet_orch_result r;
  fill_result(o, t, f, &r);
  ratchet_attempt a = {.attempt = t->attempts,
                       .status = f->status,
                       .result = NULL,
                       .lost_reason = NULL,
                       .crash = false,
                       .run_ns = f->run_ns,
                       .final = &r};
  uint64_t now = r.finished_ns;
  for (size_t i = 0; i < o->n_systems; i++) {
    const ratchet_system *s = &o->systems[i].s;
    if (s->points & RATCHET_AT_BIT(RATCHET_AT_FINAL)) {
      ratchet_decision d = {.verdict = RATCHET_PROCEED};
      s->run(s->ctx, o, t, RATCHET_AT_FINAL, &a, now, &d);
    }
  }
  ratchet__orch_publish_task(o, RATCHET_EV_COMPLETED, t, f->status, 0,
                             now - t->submitted_ns, NULL, r.error);
  if (t->ext != NULL && t->ext->followers != NULL)
    ratchet__orch_release_followers(o, t, f);
  ratchet__idmap_del(&o->tasks, t->id);
  t->state = TS_DONE;
  if (t->on_done != NULL)
    t->on_done(o, &r, t->data);
  ratchet__final_clear(f);
  ratchet__task_free(t);
  o->live--;
  if (o->live == 0 && o->drain_cb != NULL)
    ratchet__orch_kick(o);
}

/* Ends a task with f (taken over: its buffers now belong to the task's
 * finish). The task must not be waiting anywhere. */
void ratchet__orch_finish(ratchet_orch *o, task *t, final_out *f) {
  /* A cancelled leader hands its keys to the follower it promotes
   * (ratchet__orch_release_followers): keep them until then. */
  if (!(t->cancel_requested && f->status == RATCHET_STATUS_CANCELLED &&
        !o->closing && t->ext != NULL && t->ext->followers != NULL))
    ratchet__orch_forget_keys(o, t, f);
  if (o->in_api) {
    /* Deliver from the loop: park the outcome in the ext. */
    task_ext *e = ratchet__orch_ext(o, t);
    if (e != NULL) {
      if (&e->last != f) {
        ratchet__final_clear(&e->last);
        e->last = *f;
        memset(f, 0, sizeof *f);
      }
      e->has_last = true;
      t->state = TS_FINISHING;
      ratchet__list_push_back(&o->finishing, t);
      ratchet__orch_kick(o);
      return;
    }
    /* No memory to park it: deliver now rather than lose it. */
  }
  t->state = TS_FINISHING;
  deliver(o, t, f);
}

/* Ends a task with a status and a reason of the orchestrator's. When the
 * task failed before (a retry was pending), the last failure's output and
 * exit status are kept. */
void ratchet__orch_finish_with(ratchet_orch *o, task *t, ratchet_status st,
                               const char *reason) {
  final_out f;
  memset(&f, 0, sizeof f);
  if (t->ext != NULL && t->ext->has_last) {
    f = t->ext->last;
    memset(&t->ext->last, 0, sizeof t->ext->last);
    t->ext->has_last = false;
    if (reason != NULL && f.error != NULL) {
      size_t n = strlen(reason) + strlen(f.error) + 16;
      char *e = ratchet_malloc(n);
      if (e != NULL) {
        snprintf(e, n, "%s (last error: %s)", reason, f.error);
        ratchet_free(f.error);
        f.error = e;
      }
      reason = NULL;
    }
  }
  f.status = st;
  if (reason != NULL) {
    ratchet_free(f.error);
    f.error = ratchet__dup_str(reason);
  }
  ratchet__orch_finish(o, t, &f);
}

/* ----------------------------------------------------------------- systems */

/* Runs the systems of point `at` until one decides; returns the decision.
 * The reason is copied into buf. */
ratchet_decision ratchet__orch_run_systems(ratchet_orch *o, task *t,
                                           ratchet_lifecycle at,
                                           const ratchet_attempt *a,
                                           uint64_t now, char *buf,
                                           size_t cap) {
  ratchet_decision d = {.verdict = RATCHET_PROCEED};
  for (size_t i = 0; i < o->n_systems; i++) {
    const ratchet_system *s = &o->systems[i].s;
    if (!(s->points & RATCHET_AT_BIT(at)))
      continue;
    d.verdict = RATCHET_PROCEED;
    d.reason = NULL;
    s->run(s->ctx, o, t, at, a, now, &d);
    if (d.verdict != RATCHET_PROCEED || t->state == TS_FOLLOWER)
      break;
  }
  if (d.reason != NULL) {
    snprintf(buf, cap, "%s", d.reason);
    d.reason = buf;
  }
  return d;
}

/* ---------------------------------------------------------------- dispatch */

/* Sends t to worker w (or any); returns 0 (sent, or ended, or deferred:
 * keep going), -EAGAIN (no room: t is back at the front of its queue). */
/* A breaker permit taken at DISPATCH for an attempt that does not start. */
static void give_back_permit(task *t, uint64_t now) {
  if (t->breaker_permit && t->ext != NULL && t->ext->breaker != NULL)
    ratchet_breaker_record(t->ext->breaker->b, RATCHET_BREAKER_IGNORED, 0, now);
  t->breaker_permit = false;
}

static int dispatch_one(ratchet_orch *o, orch_pool *op, task *t, uint32_t w) {
  uint64_t now = ratchet_now_ns();
  char why[MAX_ERROR_TEXT];
  ratchet_decision d = ratchet__orch_run_systems(o, t, RATCHET_AT_DISPATCH,
                                                 NULL, now, why, sizeof why);
  if (d.verdict != RATCHET_PROCEED || t->cancel_requested)
    give_back_permit(t, now);
  if (t->cancel_requested) {
    /* A system cancelled it while it was being dispatched. */
    ratchet__orch_finish_with(o, t, RATCHET_STATUS_CANCELLED,
                              "cancelled before it ran");
    return 0;
  }
  if (d.verdict == RATCHET_DEFER) {
    if (ratchet__orch_schedule(
            o, t, d.until_ns > now ? d.until_ns : now + 1000000u, true) != 0)
      ratchet__orch_finish_with(o, t, RATCHET_STATUS_LOST,
                                "out of memory deferring the task");
    return 0;
  }
  if (d.verdict == RATCHET_FINISH || d.verdict == RATCHET_RETRY) {
    ratchet__orch_finish_with(
        o, t,
        d.status != RATCHET_STATUS_NONE ? d.status : RATCHET_STATUS_FAILED,
        d.reason);
    return 0;
  }
  Ratchet__V1__Task msg;
  ratchet__v1__task__init(&msg);
  msg.id = t->id;
  msg.attempt = t->attempts + 1;
  msg.kind = (char *)(uintptr_t)ratchet__kind_name(t->kind);
  msg.payload.data = t->payload;
  msg.payload.len = t->payload_len;
  Ratchet__V1__Task__MetadataEntry *md = NULL, **mdp = NULL;
  task_ext *e = t->ext;
  if (e != NULL) {
    uint64_t limit = 0;
    if (e->timeout_ns != 0)
      limit = now + e->timeout_ns;
    if (e->deadline_at != 0 && (limit == 0 || e->deadline_at < limit))
      limit = e->deadline_at;
    if (limit != 0)
      msg.deadline_unix_ms =
          wall_ms() + (limit > now ? (limit - now + 999999u) / 1000000u : 1);
    if (e->n_metadata > 0) {
      md = ratchet_calloc(e->n_metadata, sizeof *md);
      mdp = ratchet_calloc(e->n_metadata, sizeof *mdp);
      if (md != NULL && mdp != NULL) {
        for (size_t i = 0; i < e->n_metadata; i++) {
          ratchet__v1__task__metadata_entry__init(&md[i]);
          md[i].key = e->metadata[2 * i];
          md[i].value = e->metadata[2 * i + 1];
          mdp[i] = &md[i];
        }
        msg.n_metadata = e->n_metadata;
        msg.metadata = mdp;
      }
    }
  }
  uint32_t got = 0;
  int rc = ratchet_pool_dispatch(op->pool, &msg, t->crashes, w, &got);
  ratchet_free(md);
  ratchet_free(mdp);
  if (rc == -EAGAIN || rc == -ESHUTDOWN) {
    give_back_permit(t, now);
    return -EAGAIN;
  }
  if (rc < 0) {
    char buf[256];
    snprintf(buf, sizeof buf, "could not send the task to pool %u: %s",
             op->index, ratchet_strerror(rc));
    give_back_permit(t, now);
    ratchet__orch_finish_with(o, t, RATCHET_STATUS_LOST, buf);
    return 0;
  }
  t->attempts++;
  t->worker = (int32_t)got;
  t->dispatched_ns = now;
  if (t->first_dispatch_ns == 0)
    t->first_dispatch_ns = now;
  t->state = TS_FLIGHT;
  o->in_flight++;
  ratchet__acct_count(o->acct, t->kind, RATCHET_COUNT_ATTEMPTS, 1);
  if (e != NULL && e->affinity != NULL && e->pin_worker == RATCHET_NO_PIN &&
      bound_worker(o, t) < 0) {
    uintptr_t v = ((uintptr_t)op->index << 16 | got) + 1;
    (void)ratchet__strmap_put(o->affinity, e->affinity, e->affinity_len,
                              (void *)v);
  }
  ratchet__orch_publish_task(o, RATCHET_EV_DISPATCHED, t, RATCHET_STATUS_NONE,
                             0, 0, NULL, NULL);
  return 0;
}

/* Dispatches what one pool can take now. */
static void pump_pool(ratchet_orch *o, orch_pool *op) {
  if (op->closed)
    return;
  /* Tasks waiting for a particular worker first. */
  for (uint32_t w = 0; op->pinned_total > 0 && w < op->n_pinned_slots; w++) {
    task_list *l = &op->pinned[w];
    while (l->head != NULL && ratchet_pool_has_room(op->pool, w)) {
      task *t = l->head;
      ratchet__list_remove(l, t);
      op->pinned_total--;
      o->waiting--;
      ratchet__orch_expiry_untrack(o, t);
      t->state = TS_NEW; /* in nobody's list while systems run */
      if (dispatch_one(o, op, t, w) == -EAGAIN) {
        ratchet__list_push_front(l, t);
        t->state = TS_PINNED;
        op->pinned_total++;
        o->waiting++;
        ratchet__orch_expiry_track(o, t);
        break;
      }
    }
  }
  for (int p = N_PRIO - 1; p >= 0 && op->queued > 0; p--) {
    task_list *l = &op->prio[p];
    while (l->head != NULL) {
      if (!ratchet_pool_has_room(op->pool, RATCHET_POOL_ANY))
        return;
      task *t = l->head;
      ratchet__list_remove(l, t);
      op->queued--;
      o->waiting--;
      int32_t w = bound_worker(o, t);
      ratchet__orch_expiry_untrack(o, t);
      t->state = TS_NEW; /* in nobody's list while systems run */
      if (w >= 0 && pinned_list_reserve(op, (uint32_t)w) == 0) {
        /* Bound to a worker (affinity learnt after it was queued). */
        ratchet__orch_enqueue(o, t, false);
        continue;
      }
      if (dispatch_one(o, op, t, RATCHET_POOL_ANY) == -EAGAIN) {
        ratchet__list_push_front(l, t);
        t->state = TS_QUEUED;
        op->queued++;
        o->waiting++;
        ratchet__orch_expiry_track(o, t);
        return;
      }
    }
  }
}

static void maybe_room(ratchet_orch *o) {
  if (o->want_room && o->waiting <= o->opt.max_queued / 2) {
    o->want_room = false;
    if (o->opt.on_room != NULL)
      o->opt.on_room(o, o->opt.data);
  }
}

void ratchet__orch_kick_cb(uv_idle_t *h) {
  ratchet_orch *o = h->data;
  /* Outcomes decided inside API calls. */
  while (o->finishing.head != NULL) {
    task *t = o->finishing.head;
    ratchet__list_remove(&o->finishing, t);
    final_out f = t->ext->last;
    memset(&t->ext->last, 0, sizeof t->ext->last);
    t->ext->has_last = false;
    deliver(o, t, &f);
  }
  if (!o->closing)
    for (uint32_t i = 0; i < o->n_pools; i++)
      pump_pool(o, o->pools[i]);
  maybe_room(o);
  ratchet__orch_gauges(o);
  if (o->live == 0 && o->drain_cb != NULL) {
    void (*cb)(ratchet_orch *, void *) = o->drain_cb;
    o->drain_cb = NULL;
    cb(o, o->drain_arg);
  }
  if (o->finishing.head == NULL) {
    uv_idle_stop(&o->kick);
    o->kick_active = false;
  }
}

/* Due timers: delayed and deferred tasks go back to their queue; tasks past
 * their expiry end. */
void ratchet__orch_timer_cb(uv_timer_t *h) {
  ratchet_orch *o = h->data;
  o->timer_due = 0;
  uint64_t now = ratchet_now_ns();
  ratchet__heap_node *n;
  while ((n = ratchet__heap_peek(&o->expiries)) != NULL && n->due <= now) {
    ratchet__heap_pop(&o->expiries);
    task *t = ((task_ext *)((char *)n - offsetof(task_ext, expiry)))->owner;
    ratchet__orch_unwait(o, t);
    char buf[160];
    snprintf(buf, sizeof buf, "expired after %.3f s waiting",
             (double)(now - t->submitted_ns) / 1e9);
    ratchet__orch_publish_task(o, RATCHET_EV_EXPIRED, t, RATCHET_STATUS_EXPIRED,
                               0, 0, NULL, buf);
    ratchet__orch_finish_with(o, t, RATCHET_STATUS_EXPIRED, buf);
  }
  while ((n = ratchet__heap_peek(&o->timers)) != NULL && n->due <= now) {
    ratchet__heap_pop(&o->timers);
    task *t = (task *)((char *)n - offsetof(task, timer));
    o->timed--;
    o->waiting--;
    ratchet__orch_expiry_untrack(o, t);
    ratchet__orch_enqueue(o, t, t->retry_front);
  }
  ratchet__orch_arm_timer(o);
  ratchet__orch_kick(o); /* room, drain, gauges */
}

void ratchet__orch_gauges(ratchet_orch *o) {
  uint64_t ready = 0;
  for (uint32_t i = 0; i < o->n_pools; i++) {
    if (o->pools[i]->pool == NULL)
      continue;
    ratchet_pool_stats st;
    ratchet_pool_stats_get(o->pools[i]->pool, &st);
    ready += st.ready;
  }
  atomic_store(&o->g_queued, o->waiting - o->timed);
  atomic_store(&o->g_delayed, o->timed);
  atomic_store(&o->g_in_flight, o->in_flight);
  atomic_store(&o->g_ready, ready);
}
