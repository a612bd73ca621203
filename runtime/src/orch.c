/*
 * orch.c - the life of a task in the orchestrator, apart from dispatch
 * (orch_dispatch.c), outcomes (orch_outcome.c) and submit (orch_submit.c):
 * where a waiting task waits, how it ends, and the one completion callback.
 *
 * Every state change runs the systems registered for that lifecycle point
 * (built-ins first, orch_systems.c), then acts on their verdict. Waiting
 * tasks sit in their pool's priority FIFOs, in a worker's wait list (pinned
 * or bound by affinity to a worker that is full), or on the timer heap;
 * tasks with an expiry or deadline are also on the expiry heap so that
 * they end on time even when no worker frees up. One uv_timer serves both
 * heaps.
 *
 * Final outcomes decided inside an API call (a cache hit at submit, a
 * cancel) wait on the `finishing` list and are delivered from the loop, so
 * a callback never runs inside submit or cancel.
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

uint64_t ratchet__wall_ms(void) {
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
int32_t ratchet__orch_bound_worker(ratchet_orch *o, task *t) {
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

int ratchet__orch_pinned_reserve(orch_pool *op, uint32_t w) {
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
  int32_t w = ratchet__orch_bound_worker(o, t);
  if (w >= 0 && ratchet__orch_pinned_reserve(op, (uint32_t)w) == 0) {
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
void ratchet__orch_deliver(ratchet_orch *o, task *t, final_out *f) {
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
  ratchet__orch_deliver(o, t, f);
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
