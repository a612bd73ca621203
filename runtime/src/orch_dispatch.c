/*
 * orch_dispatch.c - getting waiting tasks to workers: the DISPATCH systems,
 * the Task frame (with the attempt's deadline and metadata), the pool's
 * answer, and the passes that drive it - the idle "kick" after every batch
 * of submits and outcomes, and the timer that brings delayed, deferred and
 * retried tasks back and ends expired ones.
 *
 * A pass over a pool serves the tasks waiting for a particular worker
 * first, then the priority FIFOs from the highest level down, and stops at
 * the first task the pool has no room for (it goes back to the front): the
 * pool's transport then writes the whole batch of Task frames at once.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "orch_internal.h"
#include "ratchet/alloc.h"
#include "ratchet/clock.h"
#include "ratchet/error.h"

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
          ratchet__wall_ms() +
          (limit > now ? (limit - now + 999999u) / 1000000u : 1);
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
      ratchet__orch_bound_worker(o, t) < 0) {
    uintptr_t v = ((uintptr_t)op->index << 16 | got) + 1;
    (void)ratchet__strmap_put(o->affinity, e->affinity, e->affinity_len,
                              (void *)v);
  }
  ratchet__orch_publish_task(o, RATCHET_EV_DISPATCHED, t, RATCHET_STATUS_NONE,
                             0, 0, NULL, NULL);
  return 0;
}

/* Dispatches the tasks waiting for a particular worker that has room. */
static void pump_pinned(ratchet_orch *o, orch_pool *op) {
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
}

/* Dispatches from the priority FIFOs. A task found bound to a worker
 * (affinity learnt after it was queued) moves to that worker's wait list;
 * its enqueue asks for a kick, which gives it a pinned pass next. */
static void pump_queued(ratchet_orch *o, orch_pool *op) {
  for (int p = N_PRIO - 1; p >= 0 && op->queued > 0; p--) {
    task_list *l = &op->prio[p];
    while (l->head != NULL) {
      if (!ratchet_pool_has_room(op->pool, RATCHET_POOL_ANY))
        return;
      task *t = l->head;
      ratchet__list_remove(l, t);
      op->queued--;
      o->waiting--;
      int32_t w = ratchet__orch_bound_worker(o, t);
      ratchet__orch_expiry_untrack(o, t);
      t->state = TS_NEW; /* in nobody's list while systems run */
      if (w >= 0 && ratchet__orch_pinned_reserve(op, (uint32_t)w) == 0) {
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

/* Dispatches what one pool can take now: tasks waiting for a particular
 * worker first, then the FIFOs. */
static void pump_pool(ratchet_orch *o, orch_pool *op) {
  if (op->closed)
    return;
  pump_pinned(o, op);
  pump_queued(o, op);
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
  /* A kick asked for from here on (a callback that submits, a task moved
   * between lists) keeps the idle handle running for one more pass
   * instead of being swallowed by this one. */
  o->kick_active = false;
  /* Outcomes decided inside API calls. */
  while (o->finishing.head != NULL) {
    task *t = o->finishing.head;
    ratchet__list_remove(&o->finishing, t);
    final_out f = t->ext->last;
    memset(&t->ext->last, 0, sizeof t->ext->last);
    t->ext->has_last = false;
    ratchet__orch_deliver(o, t, &f);
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
  if (o->kick_active || o->finishing.head != NULL) {
    o->kick_active = true; /* stays started: another pass next iteration */
  } else {
    uv_idle_stop(&o->kick);
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
