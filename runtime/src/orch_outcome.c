/*
 * orch_outcome.c - what the orchestrator does with what its pools report:
 * an attempt's Result (success, or failure and perhaps a retry), a lost
 * attempt (redispatch, poison pill, shutdown), worker events (published;
 * affinity bindings of a worker that ended are dropped; a failed pool ends
 * its waiting tasks), stderr lines and Log frames (published).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "orch_internal.h"
#include "ratchet/alloc.h"
#include "ratchet/clock.h"

/* ---------------------------------------------------------------- outcomes */

static void copy_result(final_out *f, const Ratchet__V1__Result *r) {
  f->status = (r->status >= 1 && r->status <= 7) ? (ratchet_status)r->status
                                                 : RATCHET_STATUS_FAILED;
  if (r->error != NULL && r->error[0] != '\0')
    f->error = ratchet__dup_str(r->error);
  f->output = ratchet__dup_bytes(r->output.data, r->output.len);
  f->output_len = f->output != NULL ? r->output.len : 0;
  f->stderr_data = ratchet__dup_bytes(r->stderr.data, r->stderr.len);
  f->stderr_len = f->stderr_data != NULL ? r->stderr.len : 0;
  if (r->stdout_path != NULL && r->stdout_path[0] != '\0')
    f->stdout_path = ratchet__dup_str(r->stdout_path);
  if (r->stderr_path != NULL && r->stderr_path[0] != '\0')
    f->stderr_path = ratchet__dup_str(r->stderr_path);
  f->exit_code = r->exit_code;
  f->term_signal = r->signal;
  f->core_dumped = r->core_dumped;
  if (r->usage != NULL) {
    f->user_cpu_us = r->usage->user_cpu_us;
    f->sys_cpu_us = r->usage->sys_cpu_us;
    f->max_rss_kb = r->usage->max_rss_kb;
  }
}

static void after_attempt(ratchet_orch *o, task *t) {
  o->in_flight--;
  t->state = TS_NEW;
}

static void on_result(ratchet_orch *o, task *t, const Ratchet__V1__Result *r,
                      uint64_t now) {
  uint64_t run = now - t->dispatched_ns;
  after_attempt(o, t);
  final_out f;
  memset(&f, 0, sizeof f);
  copy_result(&f, r);
  f.run_ns = run;
  /* At an attempt's deadline the pool sends Cancel; a worker that reads it
   * before it notices the deadline itself answers CANCELLED. Nobody asked
   * for a cancel: it is the attempt's timeout (retried as such). */
  if (f.status == RATCHET_STATUS_CANCELLED && !t->cancel_requested &&
      !o->closing && t->ext != NULL &&
      (t->ext->timeout_ns != 0 || t->ext->deadline_at != 0))
    f.status = RATCHET_STATUS_TIMEOUT;
  ratchet_attempt a = {.attempt = t->attempts,
                       .status = f.status,
                       .result = r,
                       .lost_reason = NULL,
                       .crash = false,
                       .run_ns = run,
                       .final = NULL};
  char why[MAX_ERROR_TEXT];
  if (f.status == RATCHET_STATUS_OK) {
    ratchet__orch_publish_task(o, RATCHET_EV_SUCCEEDED, t, f.status, 0, run,
                               NULL, NULL);
    (void)ratchet__orch_run_systems(o, t, RATCHET_AT_SUCCESS, &a, now, why,
                                    sizeof why);
    if (t->ext != NULL && t->ext->children_dropped > 0 && f.error == NULL) {
      char buf[160];
      snprintf(buf, sizeof buf,
               "%u child tasks dropped (over max_children %u, or refused: "
               "see the rejected events)",
               t->ext->children_dropped, t->ext->produces.max_children);
      f.error = ratchet__dup_str(buf);
    }
    ratchet__orch_finish(o, t, &f);
    return;
  }
  ratchet__orch_publish_task(o, RATCHET_EV_FAILED, t, f.status, 0, run, NULL,
                             f.error);
  ratchet_decision d;
  if (t->cancel_requested || o->closing) {
    d.verdict = RATCHET_PROCEED;
    /* The breaker still hears about it. */
    (void)ratchet__orch_run_systems(o, t, RATCHET_AT_FAILURE, &a, now, why,
                                    sizeof why);
  } else {
    d = ratchet__orch_run_systems(o, t, RATCHET_AT_FAILURE, &a, now, why,
                                  sizeof why);
  }
  if (d.verdict == RATCHET_RETRY && !t->cancel_requested && !o->closing) {
    task_ext *e = ratchet__orch_ext(o, t);
    if (e != NULL) {
      ratchet__final_clear(&e->last);
      e->last = f;
      e->has_last = true;
      ratchet__acct_count(o->acct, t->kind, RATCHET_COUNT_RETRIES, 1);
      ratchet__orch_publish_task(o, RATCHET_EV_RETRY, t, f.status, d.delay_ns,
                                 0, NULL, f.error);
      if (ratchet__orch_schedule(o, t, now + d.delay_ns, false) == 0)
        return;
      /* No memory to wait: end with this failure. */
      f = e->last;
      memset(&e->last, 0, sizeof e->last);
      e->has_last = false;
    }
  }
  if (d.verdict == RATCHET_FINISH && d.status != RATCHET_STATUS_NONE) {
    f.status = d.status;
    if (d.reason != NULL) {
      ratchet_free(f.error);
      f.error = ratchet__dup_str(d.reason);
    }
  }
  ratchet__orch_finish(o, t, &f);
}

static void on_lost(ratchet_orch *o, task *t, const ratchet_pool_outcome *oc,
                    uint64_t now) {
  uint64_t run = now - t->dispatched_ns;
  after_attempt(o, t);
  bool crash = oc->crash_count > t->crashes;
  t->crashes = oc->crash_count;
  ratchet_attempt a = {.attempt = t->attempts,
                       .status = RATCHET_STATUS_LOST,
                       .result = NULL,
                       .lost_reason = oc->reason,
                       .crash = crash,
                       .run_ns = run,
                       .final = NULL};
  char why[MAX_ERROR_TEXT];
  ratchet__orch_publish_task(o, RATCHET_EV_LOST, t, RATCHET_STATUS_LOST, 0, run,
                             NULL, oc->reason);
  ratchet__acct_count(o->acct, t->kind, RATCHET_COUNT_LOST, 1);
  if (t->ext != NULL)
    t->ext->lost_attempts++; /* a loss does not use up a retry */
  (void)ratchet__orch_run_systems(o, t, RATCHET_AT_LOST, &a, now, why,
                                  sizeof why);
  if (t->cancel_requested) {
    ratchet__orch_finish_with(o, t, RATCHET_STATUS_CANCELLED, "cancelled");
    return;
  }
  if (o->closing) {
    ratchet__orch_finish_with(o, t, RATCHET_STATUS_SHUTDOWN, oc->reason);
    return;
  }
  if (oc->poison) {
    char buf[MAX_ERROR_TEXT];
    snprintf(buf, sizeof buf,
             "poison pill: its worker ended under it %u times; last: %s",
             t->crashes, oc->reason);
    ratchet__orch_finish_with(o, t, RATCHET_STATUS_POISON, buf);
    return;
  }
  if (oc->lost == RATCHET_POOL_LOST_SEND) {
    ratchet__orch_finish_with(o, t, RATCHET_STATUS_LOST, oc->reason);
    return;
  }
  /* At-least-once: back to the front of its queue. */
  ratchet__orch_enqueue(o, t, true);
}

void ratchet__orch_pool_outcome(ratchet_pool *p,
                                const ratchet_pool_outcome *oc) {
  orch_pool *op = ratchet_pool_data(p);
  ratchet_orch *o = op->o;
  task *t = ratchet__idmap_get(&o->tasks, oc->task_id);
  if (t == NULL || t->state != TS_FLIGHT)
    return;
  uint64_t now = ratchet_now_ns();
  if (oc->result != NULL)
    on_result(o, t, oc->result, now);
  else
    on_lost(o, t, oc, now);
  ratchet__orch_kick(o);
}

/* Tasks bound by affinity to a worker that ended wait for any worker now. */
static void unbind_worker(ratchet_orch *o, orch_pool *op, uint32_t w);

void ratchet__orch_pool_event(ratchet_pool *p, const ratchet_pool_event *pe) {
  orch_pool *op = ratchet_pool_data(p);
  ratchet_orch *o = op->o;
  static const ratchet_event_type map[] = {
      [RATCHET_POOL_EVENT_STARTING] = RATCHET_EV_WORKER_STARTING,
      [RATCHET_POOL_EVENT_READY] = RATCHET_EV_WORKER_READY,
      [RATCHET_POOL_EVENT_EXITED] = RATCHET_EV_WORKER_EXITED,
      [RATCHET_POOL_EVENT_RESTARTING] = RATCHET_EV_WORKER_RESTARTING,
      [RATCHET_POOL_EVENT_RECYCLED] = RATCHET_EV_WORKER_RECYCLED,
      [RATCHET_POOL_EVENT_HUNG] = RATCHET_EV_WORKER_HUNG,
      [RATCHET_POOL_EVENT_FAILED] = RATCHET_EV_POOL_FAILED,
  };
  if ((unsigned)pe->type < sizeof map / sizeof map[0] &&
      pe->type != RATCHET_POOL_EVENT_CLOSED && pe->type != 0) {
    ratchet_event_type type = map[pe->type];
    if (ratchet_events_wanted(o->events, type)) {
      ratchet_event ev = RATCHET_EVENT_INIT;
      ev.type = type;
      ev.pool = (int32_t)op->index;
      ev.worker =
          pe->type == RATCHET_POOL_EVENT_FAILED ? -1 : (int32_t)pe->worker_id;
      ev.pid = pe->pid;
      if (pe->type == RATCHET_POOL_EVENT_EXITED) {
        ev.status = pe->exit_status;
        ev.signal = pe->term_signal;
      }
      ev.delay_ns = pe->delay_ns;
      ev.message = pe->message != NULL ? pe->message : "";
      ratchet_events_publish(o->events, &ev);
    }
  }
  if (pe->type == RATCHET_POOL_EVENT_EXITED)
    unbind_worker(o, op, pe->worker_id);
  if (pe->type == RATCHET_POOL_EVENT_FAILED && !o->closing) {
    /* The pool gave up: nothing it would run can run. Its waiting tasks
     * end LOST with the pool's reason; its in-flight ones come back lost
     * as the pool winds down. */
    op->closed = true;
    op->failed = true;
    snprintf(op->fail_reason, sizeof op->fail_reason, "pool %u failed: %s",
             op->index, pe->message != NULL ? pe->message : "");
    const char *buf = op->fail_reason;
    for (int i = 0; i < N_PRIO; i++)
      while (op->prio[i].head != NULL) {
        task *t = op->prio[i].head;
        ratchet__orch_unwait(o, t);
        ratchet__orch_finish_with(o, t, RATCHET_STATUS_LOST, buf);
      }
    for (uint32_t w = 0; w < op->n_pinned_slots; w++)
      while (op->pinned[w].head != NULL) {
        task *t = op->pinned[w].head;
        ratchet__orch_unwait(o, t);
        ratchet__orch_finish_with(o, t, RATCHET_STATUS_LOST, buf);
      }
  }
  ratchet__orch_kick(o);
}

/* An affinity binding to the worker that ended. */
static bool bound_to(void *ctx, const void *key, size_t len, void *val) {
  (void)key, (void)len;
  return (uintptr_t)val == *(const uintptr_t *)ctx;
}

static void unbind_worker(ratchet_orch *o, orch_pool *op, uint32_t w) {
  uintptr_t v = ((uintptr_t)op->index << 16 | w) + 1;
  /* On -ENOMEM the bindings stay: their tasks wait for the slot's next
   * process, as pinned tasks do. */
  (void)ratchet__strmap_remove_if(o->affinity, bound_to, &v);
  if (w >= op->n_pinned_slots)
    return;
  task_list *l = &op->pinned[w];
  task *t = l->head;
  while (t != NULL) {
    task *next = t->next;
    if (t->ext != NULL && t->ext->pin_worker == RATCHET_NO_PIN) {
      ratchet__list_remove(l, t);
      op->pinned_total--;
      o->waiting--;
      ratchet__orch_expiry_untrack(o, t);
      ratchet__orch_enqueue(o, t, true);
    }
    t = next;
  }
}

void ratchet__orch_pool_stderr(ratchet_pool *p, uint32_t worker_id,
                               const char *line, size_t len) {
  orch_pool *op = ratchet_pool_data(p);
  ratchet_orch *o = op->o;
  if (!ratchet_events_wanted(o->events, RATCHET_EV_WORKER_STDERR))
    return;
  ratchet_event ev = RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_WORKER_STDERR;
  ev.pool = (int32_t)op->index;
  ev.worker = (int32_t)worker_id;
  (void)len;
  ev.message = line;
  ratchet_events_publish(o->events, &ev);
}

void ratchet__orch_pool_log(ratchet_pool *p, uint32_t worker_id,
                            uint64_t task_id, int level, const char *text) {
  orch_pool *op = ratchet_pool_data(p);
  ratchet_orch *o = op->o;
  if (!ratchet_events_wanted(o->events, RATCHET_EV_TASK_LOG))
    return;
  ratchet_event ev = RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_TASK_LOG;
  ev.pool = (int32_t)op->index;
  ev.worker = (int32_t)worker_id;
  ev.task_id = task_id;
  task *t = task_id != 0 ? ratchet__idmap_get(&o->tasks, task_id) : NULL;
  if (t != NULL) {
    ev.kind = ratchet__kind_name(t->kind);
    ev.attempt = t->attempts;
  }
  ev.level = level;
  ev.message = text;
  ratchet_events_publish(o->events, &ev);
}
