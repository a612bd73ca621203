/*
 * orch_api.c - an orchestrator's configuration and lifetime: creation,
 * pools, per-group breaker and rate-limit configuration, user systems,
 * start, cancel, drain, close, statistics, and the accessors systems use.
 *
 * Closing is a sequence of callbacks: waiting tasks end SHUTDOWN at once;
 * each pool is closed (its in-flight tasks finish or come back lost, which
 * ends them SHUTDOWN); when the last pool has called back, the loop handles
 * are closed, and when the last of those has called back the memory is
 * freed and the owner's callback runs.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "orch_internal.h"
#include "ratchet/alloc.h"
#include "ratchet/clock.h"
#include "ratchet/error.h"

static void async_cb(uv_async_t *h) {
  ratchet__orch_async_drain(h->data);
}

static void free_breaker(void *ctx, const void *key, size_t len, void *val) {
  (void)ctx, (void)key, (void)len;
  breaker_ref *r = val;
  ratchet_breaker_free(r->b);
  ratchet_free(r);
}

static void free_plain(void *ctx, const void *key, size_t len, void *val) {
  (void)ctx, (void)key, (void)len;
  ratchet_free(val);
}

static void free_limiter(void *ctx, const void *key, size_t len, void *val) {
  (void)ctx, (void)key, (void)len;
  ratchet_ratelimit_free(val);
}

static void orch_free(ratchet_orch *o) {
  if (o == NULL)
    return;
  for (size_t i = 0; i < o->n_systems; i++) {
    if (o->systems[i].s.free_ctx != NULL)
      o->systems[i].s.free_ctx(o->systems[i].s.ctx);
    ratchet_free(o->systems[i].name);
  }
  ratchet_free(o->systems);
  for (uint32_t i = 0; i < o->n_pools; i++) {
    orch_pool *op = o->pools[i];
    if (op->kinds != NULL) {
      for (char **k = op->kinds; *k != NULL; k++)
        ratchet_free(*k);
      ratchet_free(op->kinds);
    }
    ratchet_free(op->pinned);
    ratchet_free(op);
  }
  ratchet_free(o->pools);
  if (o->breakers != NULL)
    ratchet__strmap_foreach(o->breakers, free_breaker, NULL);
  ratchet__strmap_free(o->breakers);
  if (o->breaker_cfg != NULL)
    ratchet__strmap_foreach(o->breaker_cfg, free_plain, NULL);
  ratchet__strmap_free(o->breaker_cfg);
  if (o->limiters != NULL)
    ratchet__strmap_foreach(o->limiters, free_limiter, NULL);
  ratchet__strmap_free(o->limiters);
  ratchet__strmap_free(o->affinity);
  if (o->dedupe != NULL)
    ratchet__orch_dedupe_free_all(o);
  ratchet__strmap_free(o->dedupe);
  ratchet__strmap_free(o->cache_inflight);
  ratchet_retry_budget_free(o->budget);
  ratchet_key_builder_free(o->keyb);
  ratchet_events_free(o->events);
  ratchet__acct_free(o->acct);
  ratchet__idmap_free(&o->tasks);
  ratchet__heap_free(&o->timers);
  ratchet__heap_free(&o->expiries);
  if (o->dead_letter_fd >= 0)
    close(o->dead_letter_fd);
  ratchet_free(o->dead_letter_path);
  pthread_mutex_destroy(&o->async_lock);
  ratchet_free(o);
}

int ratchet_orch_new(uv_loop_t *loop, const ratchet_orch_options *opt,
                     ratchet_orch **out) {
  if (loop == NULL || opt == NULL || out == NULL)
    return -EINVAL;
  if (opt->max_queued == 0)
    return -EINVAL;
  ratchet_orch *o = ratchet_calloc(1, sizeof *o);
  if (o == NULL)
    return -ENOMEM;
  o->loop = loop;
  o->opt = *opt;
  o->opt.breaker_defaults.listener = NULL;
  o->opt.breaker_defaults.listener_ctx = NULL;
  o->opt.dead_letter_path = NULL;
  o->opt.retry_budget = NULL;
  o->dead_letter_fd = -1;
  atomic_init(&o->next_id, 1);
  ratchet__idmap_init(&o->tasks);
  ratchet__heap_init(&o->timers);
  ratchet__heap_init(&o->expiries);
  int rc = -ENOMEM;
  if (pthread_mutex_init(&o->async_lock, NULL) != 0) {
    ratchet_free(o);
    return -ENOMEM;
  }
  /* Options that need checking against resilience's rules. */
  ratchet_breaker *probe = NULL;
  rc = ratchet_breaker_new(&o->opt.breaker_defaults, 0, &probe);
  if (rc != 0) {
    if (rc == -EINVAL)
      ratchet__orch_error(o, "breaker_defaults are invalid");
    goto fail;
  }
  ratchet_breaker_free(probe);
  rc = -ENOMEM;
  if (ratchet__acct_new(&o->acct) != 0 || ratchet_events_new(&o->events) != 0 ||
      ratchet__strmap_new(&o->breakers) != 0 ||
      ratchet__strmap_new(&o->breaker_cfg) != 0 ||
      ratchet__strmap_new(&o->limiters) != 0 ||
      ratchet__strmap_new(&o->affinity) != 0 ||
      ratchet__strmap_new(&o->dedupe) != 0 ||
      ratchet__strmap_new(&o->cache_inflight) != 0 ||
      ratchet_key_builder_new(&o->keyb) != 0)
    goto fail;
  if (opt->retry_budget != NULL) {
    rc = ratchet_retry_budget_new(opt->retry_budget, ratchet_now_ns(),
                                  &o->budget);
    if (rc != 0)
      goto fail;
  }
  ratchet_rng_seed(&o->rng, opt->seed != 0 ? opt->seed : ratchet_now_ns());
  o->n_builtin = ratchet__n_builtin_systems;
  o->systems = ratchet_calloc(o->n_builtin, sizeof *o->systems);
  if (o->systems == NULL) {
    rc = -ENOMEM;
    goto fail;
  }
  for (size_t i = 0; i < o->n_builtin; i++)
    o->systems[i].s = ratchet__builtin_systems[i];
  o->n_systems = o->n_builtin;
  if (opt->dead_letter_path != NULL) {
    rc = ratchet__deadletter_open(o, opt->dead_letter_path);
    if (rc != 0)
      goto fail;
  }
  /* The handles last: only uv_async_init can fail, and after it nothing
   * does, so a failure never leaves a handle to close asynchronously. */
  rc = uv_async_init(loop, &o->async, async_cb);
  if (rc != 0)
    goto fail;
  o->async.data = o;
  uv_timer_init(loop, &o->timer);
  o->timer.data = o;
  uv_idle_init(loop, &o->kick);
  o->kick.data = o;
  o->open_handles = 3;
  o->loop_thread = uv_thread_self();
  *out = o;
  return 0;
fail:
  orch_free(o);
  return rc;
}

int ratchet_orch_add_pool(ratchet_orch *o, const ratchet_pool_options *po,
                          const char *const *kinds) {
  if (o == NULL || po == NULL)
    return -EINVAL;
  if (o->started || o->closing)
    return -EALREADY;
  if (o->n_pools >= UINT16_MAX)
    return -EINVAL;
  orch_pool *op = ratchet_calloc(1, sizeof *op);
  if (op == NULL)
    return -ENOMEM;
  op->o = o;
  op->index = o->n_pools;
  int rc = -ENOMEM;
  if (kinds != NULL) {
    size_t n = 0;
    while (kinds[n] != NULL)
      n++;
    op->kinds = ratchet_calloc(n + 1, sizeof *op->kinds);
    if (op->kinds == NULL)
      goto fail;
    for (size_t i = 0; i < n; i++)
      if ((op->kinds[i] = ratchet__dup_str(kinds[i])) == NULL)
        goto fail;
  }
  orch_pool **v = ratchet_realloc(o->pools, (o->n_pools + 1) * sizeof *v);
  if (v == NULL)
    goto fail;
  o->pools = v;
  ratchet_pool_options mine = *po;
  mine.on_outcome = ratchet__orch_pool_outcome;
  mine.on_event = ratchet__orch_pool_event;
  mine.on_stderr_line = ratchet__orch_pool_stderr;
  mine.on_log = ratchet__orch_pool_log;
  mine.data = op;
  rc = ratchet_pool_new(o->loop, &mine, &op->pool);
  if (rc != 0)
    goto fail;
  o->pools[o->n_pools++] = op;
  return (int)op->index;
fail:
  if (op->kinds != NULL) {
    for (char **k = op->kinds; *k != NULL; k++)
      ratchet_free(*k);
    ratchet_free(op->kinds);
  }
  ratchet_free(op);
  return rc;
}

ratchet_pool *ratchet_orch_pool(ratchet_orch *o, uint32_t i) {
  return o != NULL && i < o->n_pools ? o->pools[i]->pool : NULL;
}

int ratchet_orch_breaker_config(ratchet_orch *o, const char *group,
                                const ratchet_breaker_options *bo) {
  if (o == NULL || group == NULL || group[0] == '\0' || bo == NULL ||
      strlen(group) > MAX_GROUP)
    return -EINVAL;
  ratchet_breaker *probe = NULL;
  int rc = ratchet_breaker_new(bo, 0, &probe);
  if (rc != 0)
    return rc;
  ratchet_breaker_free(probe);
  size_t len = strlen(group);
  if (ratchet__strmap_get(o->breakers, group, len) != NULL ||
      ratchet__strmap_get(o->breaker_cfg, group, len) != NULL)
    return -EEXIST;
  ratchet_breaker_options *c = ratchet_malloc(sizeof *c);
  if (c == NULL)
    return -ENOMEM;
  *c = *bo;
  c->listener = NULL;
  c->listener_ctx = NULL;
  rc = ratchet__strmap_put(o->breaker_cfg, group, len, c);
  if (rc != 0)
    ratchet_free(c);
  return rc;
}

int ratchet_orch_rate_limit(ratchet_orch *o, const char *group,
                            const ratchet_ratelimit_options *ro) {
  if (o == NULL || group == NULL || group[0] == '\0' || ro == NULL ||
      strlen(group) > MAX_GROUP)
    return -EINVAL;
  size_t len = strlen(group);
  if (ratchet__strmap_get(o->limiters, group, len) != NULL)
    return -EEXIST;
  ratchet_ratelimit *rl = NULL;
  int rc = ratchet_ratelimit_new(ro, ratchet_now_ns(), &rl);
  if (rc != 0)
    return rc;
  rc = ratchet__strmap_put(o->limiters, group, len, rl);
  if (rc != 0)
    ratchet_ratelimit_free(rl);
  return rc;
}

int ratchet_orch_add_system(ratchet_orch *o, const ratchet_system *s) {
  if (o == NULL || s == NULL || s->run == NULL || s->points == 0 ||
      (s->points & ~0x3fu) != 0)
    return -EINVAL;
  if (o->started || o->closing)
    return -EALREADY;
  sys_entry *v = ratchet_realloc(o->systems, (o->n_systems + 1) * sizeof *v);
  if (v == NULL)
    return -ENOMEM;
  o->systems = v;
  char *name = ratchet__dup_str(s->name != NULL ? s->name : "");
  if (name == NULL)
    return -ENOMEM;
  v[o->n_systems].s = *s;
  v[o->n_systems].s.name = name;
  v[o->n_systems].name = name;
  o->n_systems++;
  return 0;
}

ratchet_events *ratchet_orch_events(ratchet_orch *o) {
  return o != NULL ? o->events : NULL;
}

static void pool_closed_cb(void *data);

int ratchet_orch_start(ratchet_orch *o) {
  if (o == NULL)
    return -EINVAL;
  if (o->started || o->closing)
    return -EALREADY;
  if (o->n_pools == 0) {
    ratchet__orch_error(o, "no pool: add one with ratchet_orch_add_pool");
    return -EINVAL;
  }
  int rc;
  for (uint32_t i = 0; i < o->n_pools; i++) {
    rc = ratchet_pool_start(o->pools[i]->pool);
    if (rc != 0)
      return rc;
  }
  o->started = true;
  ratchet__orch_arm_timer(o);
  ratchet__orch_kick(o);
  return 0;
}

/* ------------------------------------------------------------------ cancel */

int ratchet_orch_cancel(ratchet_orch *o, uint64_t id) {
  if (o == NULL)
    return -EINVAL;
  task *t = ratchet__idmap_get(&o->tasks, id);
  if (t == NULL || t->state == TS_FINISHING || t->state == TS_DONE)
    return -ENOENT;
  if (t->cancel_requested)
    return -EALREADY;
  t->cancel_requested = true;
  if (t->state == TS_NEW)
    return 0; /* between two states (a system is running on it): the code
                 that moves it on sees the flag */
  bool was = o->in_api;
  o->in_api = true;
  switch ((task_state)t->state) {
  case TS_FLIGHT: {
    int rc = ratchet_pool_cancel(o->pools[t->pool]->pool, t->id);
    (void)rc; /* -EALREADY: it is past its deadline and being cancelled */
    break;
  }
  case TS_FOLLOWER:
    ratchet__orch_detach_follower(o, t);
    ratchet__orch_publish_task(o, RATCHET_EV_CANCELLED, t,
                               RATCHET_STATUS_CANCELLED, 0, 0, NULL, NULL);
    ratchet__orch_finish_with(o, t, RATCHET_STATUS_CANCELLED, "cancelled");
    break;
  default:
    ratchet__orch_unwait(o, t);
    ratchet__orch_publish_task(o, RATCHET_EV_CANCELLED, t,
                               RATCHET_STATUS_CANCELLED, 0, 0, NULL, NULL);
    ratchet__orch_finish_with(o, t, RATCHET_STATUS_CANCELLED,
                              "cancelled before it ran");
    break;
  }
  o->in_api = was;
  return 0;
}

int ratchet_orch_drain(ratchet_orch *o, void (*cb)(ratchet_orch *, void *),
                       void *arg) {
  if (o == NULL || cb == NULL)
    return -EINVAL;
  if (o->drain_cb != NULL)
    return -EBUSY;
  o->drain_cb = cb;
  o->drain_arg = arg;
  ratchet__orch_kick(o);
  return 0;
}

/* ------------------------------------------------------------------- close */

static void handle_closed_cb(uv_handle_t *h) {
  ratchet_orch *o = h->data;
  if (--o->open_handles > 0)
    return;
  void (*cb)(void *) = o->close_cb;
  void *data = o->opt.data;
  orch_free(o);
  if (cb != NULL)
    cb(data);
}

/* Every pool is closed: deliver what is pending, close the handles. */
static void wind_down(ratchet_orch *o) {
  ratchet__orch_async_drain(o); /* ends them SHUTDOWN (closing) */
  while (o->finishing.head != NULL)
    ratchet__orch_kick_cb(&o->kick);
  o->close_started = true;
  uv_close((uv_handle_t *)&o->timer, handle_closed_cb);
  uv_close((uv_handle_t *)&o->kick, handle_closed_cb);
  uv_close((uv_handle_t *)&o->async, handle_closed_cb);
}

static void pool_closed_cb(void *data) {
  orch_pool *op = data;
  ratchet_orch *o = op->o;
  op->pool = NULL;
  op->closed = true;
  if (--o->open_pools == 0)
    wind_down(o);
}

/* Ends every waiting task SHUTDOWN. */
static void shutdown_waiting(ratchet_orch *o) {
  for (uint32_t i = 0; i < o->n_pools; i++) {
    orch_pool *op = o->pools[i];
    for (int p = 0; p < N_PRIO; p++)
      while (op->prio[p].head != NULL) {
        task *t = op->prio[p].head;
        ratchet__orch_unwait(o, t);
        ratchet__orch_finish_with(o, t, RATCHET_STATUS_SHUTDOWN,
                                  "the orchestrator closed before it ran");
      }
    for (uint32_t w = 0; w < op->n_pinned_slots; w++)
      while (op->pinned[w].head != NULL) {
        task *t = op->pinned[w].head;
        ratchet__orch_unwait(o, t);
        ratchet__orch_finish_with(o, t, RATCHET_STATUS_SHUTDOWN,
                                  "the orchestrator closed before it ran");
      }
  }
  ratchet__heap_node *n;
  while ((n = ratchet__heap_peek(&o->timers)) != NULL) {
    task *t = (task *)((char *)n - offsetof(task, timer));
    ratchet__orch_unwait(o, t);
    ratchet__orch_finish_with(o, t, RATCHET_STATUS_SHUTDOWN,
                              "the orchestrator closed before it ran");
  }
}

void ratchet_orch_close(ratchet_orch *o, void (*cb)(void *data)) {
  if (o == NULL || o->closing)
    return;
  o->closing = true;
  o->close_cb = cb;
  pthread_mutex_lock(&o->async_lock);
  o->async_closed = true;
  pthread_mutex_unlock(&o->async_lock);
  bool was = o->in_api;
  o->in_api = true;
  shutdown_waiting(o);
  o->in_api = was;
  o->open_pools = o->n_pools;
  if (o->n_pools == 0) {
    wind_down(o);
    return;
  }
  for (uint32_t i = 0; i < o->n_pools; i++)
    ratchet_pool_close(o->pools[i]->pool, pool_closed_cb);
}

/* ------------------------------------------------------------------- stats */

int ratchet_orch_stats(ratchet_orch *o, ratchet_stats **out) {
  if (o == NULL || out == NULL)
    return -EINVAL;
  uv_thread_t self = uv_thread_self();
  if (uv_thread_equal(&self, &o->loop_thread))
    ratchet__orch_gauges(o); /* exact on the loop; a moment old elsewhere */
  ratchet__gauges g;
  g.taken_ns = ratchet_now_ns();
  g.queued = atomic_load(&o->g_queued);
  g.delayed = atomic_load(&o->g_delayed);
  g.in_flight = atomic_load(&o->g_in_flight);
  g.workers_ready = atomic_load(&o->g_ready);
  return ratchet__acct_snapshot(o->acct, &g, out);
}

const char *ratchet_orch_last_error(const ratchet_orch *o) {
  return o != NULL ? o->last_error : "";
}

void *ratchet_orch_data(const ratchet_orch *o) {
  return o != NULL ? o->opt.data : NULL;
}

/* --------------------------------------------------------------- accessors */

uint64_t ratchet_orch_task_id(const ratchet_orch_task *t) {
  return t->id;
}

const char *ratchet_orch_task_kind(const ratchet_orch_task *t) {
  return ratchet__kind_name(t->kind);
}

const void *ratchet_orch_task_payload(const ratchet_orch_task *t, size_t *len) {
  if (len != NULL)
    *len = t->payload_len;
  return t->payload;
}

uint32_t ratchet_orch_task_attempts(const ratchet_orch_task *t) {
  return t->attempts;
}

int ratchet_orch_task_priority(const ratchet_orch_task *t) {
  return t->priority;
}

uint64_t ratchet_orch_task_submitted_ns(const ratchet_orch_task *t) {
  return t->submitted_ns;
}

const void *ratchet_orch_task_component(const ratchet_orch_task *t,
                                        uint32_t type, size_t *size) {
  if (t->ext != NULL)
    for (size_t i = 0; i < t->ext->n_components; i++)
      if (t->ext->components[i].type == type) {
        if (size != NULL)
          *size = t->ext->components[i].size;
        return t->ext->components[i].data;
      }
  return NULL;
}
