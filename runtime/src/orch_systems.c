/*
 * orch_systems.c - the built-in policies, each a system over one component
 * of the task (ratchet/orch.h), in the order they run:
 *
 *   dedupe      SUBMIT: join the task with the same key (leading), or
 *               replace it and wait for quiet (trailing); DISPATCH: a
 *               trailing task that starts closes its window
 *   cache       SUBMIT: a hit ends the task; an identical task in flight is
 *               joined (single flight); SUCCESS: store the Result
 *   delay       SUBMIT: wait until submit + delay
 *   expiry      DISPATCH: end EXPIRED past the expiry or the deadline
 *   rate_limit  DISPATCH: take a permit of the group's limiter, or wait
 *   breaker     DISPATCH: ask the breaker (fail fast or wait when open);
 *               SUCCESS, FAILURE, LOST: record the attempt
 *   retry       DISPATCH: a first attempt feeds the retry budget;
 *               FAILURE: retry with backoff while attempts, budget and
 *               deadline allow
 *   produces    SUCCESS: submit the children the Result carries
 *   dead_letter FINAL: final failures to the JSON-lines file and callback
 *   accounting  FINAL: counts and histograms per kind and status
 *
 * Every system keeps its state in the orchestrator (breakers, limiters,
 * dedupe windows, the in-flight cache keys, the budget) and reads the task
 * only: they are stateless in the sense of an entity-component-system
 * design. Coalescing (orch_coalesce.c, with the dedupe system) is the one
 * place where systems move tasks: a follower waits on its leader's list
 * instead of in a queue, and gets a copy of the leader's outcome.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "orch_internal.h"
#include "ratchet/alloc.h"
#include "ratchet/clock.h"
#include "ratchet/error.h"

/* ---------------------------------------------------------------- cache */

static void *pb_alloc(void *data, size_t size) {
  (void)data;
  return ratchet_malloc(size);
}
static void pb_free(void *data, void *p) {
  (void)data;
  ratchet_free(p);
}
static ProtobufCAllocator pb_allocator = {pb_alloc, pb_free, NULL};

int ratchet__cache_value_decode(const void *v, size_t len, final_out *f) {
  Ratchet__V1__Result *r =
      ratchet__v1__result__unpack(&pb_allocator, len, (const uint8_t *)v);
  if (r == NULL)
    return RATCHET_ECACHE_CORRUPT;
  memset(f, 0, sizeof *f);
  f->status = RATCHET_STATUS_OK;
  f->output = ratchet__dup_bytes(r->output.data, r->output.len);
  f->output_len = f->output != NULL ? r->output.len : 0;
  f->stderr_data = ratchet__dup_bytes(r->stderr.data, r->stderr.len);
  f->stderr_len = f->stderr_data != NULL ? r->stderr.len : 0;
  f->exit_code = r->exit_code;
  f->cached = true;
  bool oom = (r->output.len > 0 && f->output == NULL) ||
             (r->stderr.len > 0 && f->stderr_data == NULL);
  ratchet__v1__result__free_unpacked(r, &pb_allocator);
  if (oom) {
    ratchet__final_clear(f);
    return -ENOMEM;
  }
  return 0;
}

static void cache_store(ratchet_orch *o, task_ext *e,
                        const Ratchet__V1__Result *res, uint64_t now) {
  (void)now;
  /* Output spilled to files is too big to cache. */
  if ((res->stdout_path != NULL && res->stdout_path[0] != '\0') ||
      (res->stderr_path != NULL && res->stderr_path[0] != '\0'))
    return;
  Ratchet__V1__Result r;
  ratchet__v1__result__init(&r);
  r.status = RATCHET__V1__STATUS__STATUS_OK;
  r.output = res->output;
  r.stderr = res->stderr;
  r.exit_code = res->exit_code;
  size_t n = ratchet__v1__result__get_packed_size(&r);
  uint8_t *buf = ratchet_malloc(n ? n : 1);
  if (buf == NULL)
    return;
  ratchet__v1__result__pack(&r, buf);
  ratchet_store_put_options po = RATCHET_STORE_PUT_OPTIONS_INIT;
  po.ttl_ms = e->cache.ttl_ms;
  uint64_t now_ms = ratchet__wall_ms();
  (void)ratchet_tiered_put(o->opt.cache, &e->cache_key, buf, n, &po, now_ms);
  ratchet_free(buf);
}

/* The task's cache key: given, or derived from kind, payload and salt.
 * 0, or -1 when it cannot be built (the task then runs uncached). */
static int cache_key(ratchet_orch *o, task *t, task_ext *e) {
  if (e->cache_key_set)
    return 0;
  if (e->cache.has_key) {
    e->cache_key = e->cache.key;
  } else {
    ratchet_key_builder_reset(o->keyb);
    if (ratchet_key_add_kind(o->keyb, ratchet__kind_name(t->kind)) != 0 ||
        ratchet_key_add_payload(o->keyb, t->payload, t->payload_len) != 0 ||
        (e->cache.salt != NULL &&
         ratchet_key_add_salt(o->keyb, e->cache.salt) != 0) ||
        ratchet_key_finish(o->keyb, &e->cache_key) != 0)
      return -1;
  }
  e->cache_key_set = true;
  return 0;
}

static void sys_cache(RATCHET__RUN_ARGS) {
  (void)ctx;
  task_ext *e = t->ext;
  if (e == NULL || !e->has_cache)
    return;
  if (at == RATCHET_AT_SUCCESS) {
    /* A debounced task never looked the cache up: its key is made now. */
    if (a != NULL && a->result != NULL && cache_key(o, t, e) == 0)
      cache_store(o, e, a->result, now);
    return;
  }
  /* SUBMIT */
  if (cache_key(o, t, e) != 0) {
    e->has_cache = false; /* run it uncached rather than fail it */
    return;
  }
  uint64_t now_ms = ratchet__wall_ms();
  ratchet_tiered_value v;
  if (ratchet_tiered_get(o->opt.cache, &e->cache_key, now_ms, &v) == 0) {
    final_out f;
    int rc = ratchet__cache_value_decode(v.data, v.size, &f);
    ratchet_tiered_release(o->opt.cache, &v);
    if (rc == 0) {
      ratchet__final_clear(&e->last);
      e->last = f;
      e->has_last = true;
      ratchet__acct_count(o->acct, t->kind, RATCHET_COUNT_CACHE_HITS, 1);
      ratchet__orch_publish_task(o, RATCHET_EV_CACHE_HIT, t, RATCHET_STATUS_OK,
                                 0, 0, NULL, NULL);
      d->verdict = RATCHET_FINISH;
      d->status = RATCHET_STATUS_OK;
      return;
    }
    if (rc == RATCHET_ECACHE_CORRUPT)
      (void)ratchet_tiered_invalidate(o->opt.cache, &e->cache_key);
  }
  ratchet__acct_count(o->acct, t->kind, RATCHET_COUNT_CACHE_MISSES, 1);
  unsigned char kb[16];
  ratchet_cache_key_bytes(&e->cache_key, kb);
  if (e->cache.coalesce) {
    task *leader = ratchet__strmap_get(o->cache_inflight, kb, sizeof kb);
    if (leader != NULL && leader != t) {
      ratchet__orch_make_follower(o, t, leader);
      return;
    }
    if (ratchet__strmap_put(o->cache_inflight, kb, sizeof kb, t) == 0)
      e->cache_leader = true;
  }
}

/* ----------------------------------------------------------------- delay */

static void sys_delay(RATCHET__RUN_ARGS) {
  (void)ctx, (void)o, (void)at, (void)a;
  if (t->ext != NULL && t->ext->not_before > now) {
    d->verdict = RATCHET_DEFER;
    d->until_ns = t->ext->not_before;
  }
}

/* ---------------------------------------------------------------- expiry */

static void sys_expiry(RATCHET__RUN_ARGS) {
  (void)ctx, (void)at, (void)a;
  task_ext *e = t->ext;
  if (e == NULL)
    return;
  static _Thread_local char buf[160];
  if (e->expire_at != 0 && t->first_dispatch_ns == 0 && now >= e->expire_at) {
    snprintf(buf, sizeof buf, "expired: not started within %.3f s",
             (double)(e->expire_at - t->submitted_ns) / 1e9);
  } else if (e->deadline_at != 0 && now >= e->deadline_at) {
    snprintf(buf, sizeof buf, "expired: its deadline (%.3f s) passed",
             (double)(e->deadline_at - t->submitted_ns) / 1e9);
  } else {
    return;
  }
  ratchet__orch_publish_task(o, RATCHET_EV_EXPIRED, t, RATCHET_STATUS_EXPIRED,
                             0, 0, NULL, buf);
  d->verdict = RATCHET_FINISH;
  d->status = RATCHET_STATUS_EXPIRED;
  d->reason = buf;
}

/* ------------------------------------------------------------ rate limit */

static void sys_rate_limit(RATCHET__RUN_ARGS) {
  (void)ctx, (void)at, (void)a;
  task_ext *e = t->ext;
  if (e == NULL || e->limiter == NULL)
    return;
  uint64_t wait = 0;
  if (ratchet_ratelimit_acquire(e->limiter, 1, now, &wait) == 0)
    return;
  if (wait == 0)
    wait = 1000000u;
  ratchet__acct_count(o->acct, t->kind, RATCHET_COUNT_DEFERRED, 1);
  ratchet__orch_publish_task(o, RATCHET_EV_DEFERRED, t, RATCHET_STATUS_NONE,
                             wait, 0, e->rate_group, "rate limited");
  d->verdict = RATCHET_DEFER;
  d->until_ns = now + wait;
}

/* --------------------------------------------------------------- breaker */

static void breaker_listener(void *ctx, ratchet_breaker *b,
                             ratchet_breaker_state from,
                             ratchet_breaker_state to, uint64_t now_ns) {
  (void)b;
  breaker_ref *r = ctx;
  ratchet_orch *o = r->o;
  if (!ratchet_events_wanted(o->events, RATCHET_EV_BREAKER))
    return;
  ratchet_event ev = RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_BREAKER;
  ev.time_ns = now_ns;
  ev.group = r->name;
  ev.from_state = (int)from;
  ev.to_state = (int)to;
  char msg[200];
  snprintf(msg, sizeof msg, "circuit breaker '%.100s': %s -> %s", r->name,
           ratchet_breaker_state_name(from), ratchet_breaker_state_name(to));
  ev.message = msg;
  ratchet_events_publish(o->events, &ev);
}

breaker_ref *ratchet__orch_breaker(ratchet_orch *o, const char *group) {
  size_t len = strlen(group);
  breaker_ref *r = ratchet__strmap_get(o->breakers, group, len);
  if (r != NULL)
    return r;
  r = ratchet_malloc(sizeof *r + len + 1);
  if (r == NULL)
    return NULL;
  r->o = o;
  memcpy(r->name, group, len + 1);
  const ratchet_breaker_options *cfg =
      ratchet__strmap_get(o->breaker_cfg, group, len);
  ratchet_breaker_options bo = cfg != NULL ? *cfg : o->opt.breaker_defaults;
  bo.listener = breaker_listener;
  bo.listener_ctx = r;
  if (ratchet_breaker_new(&bo, ratchet_now_ns(), &r->b) != 0) {
    ratchet_free(r);
    return NULL;
  }
  if (ratchet__strmap_put(o->breakers, group, len, r) != 0) {
    ratchet_breaker_free(r->b);
    ratchet_free(r);
    return NULL;
  }
  return r;
}

static bool counts_as_failure(ratchet_status s) {
  return s == RATCHET_STATUS_FAILED || s == RATCHET_STATUS_TIMEOUT ||
         s == RATCHET_STATUS_INTERNAL_ERROR;
}

static void sys_breaker(RATCHET__RUN_ARGS) {
  (void)ctx;
  task_ext *e = t->ext;
  if (e == NULL || !e->has_breaker || e->breaker == NULL)
    return;
  ratchet_breaker *b = e->breaker->b;
  if (at == RATCHET_AT_DISPATCH) {
    if (ratchet_breaker_allow(b, now) == 0) {
      t->breaker_permit = true;
      return;
    }
    if (e->breaker_mode == RATCHET_BREAKER_FAIL_FAST) {
      static _Thread_local char buf[MAX_GROUP + 64];
      snprintf(buf, sizeof buf, "circuit breaker '%s' is open",
               e->breaker->name);
      ratchet__orch_publish_task(o, RATCHET_EV_REJECTED, t,
                                 RATCHET_STATUS_REJECTED, 0, 0,
                                 e->breaker->name, buf);
      d->verdict = RATCHET_FINISH;
      d->status = RATCHET_STATUS_REJECTED;
      d->reason = buf;
      return;
    }
    ratchet_breaker_metrics m;
    ratchet_breaker_metrics_get(b, now, &m);
    uint64_t until =
        m.open_until_ns > now ? m.open_until_ns : now + 100u * 1000000u;
    ratchet__acct_count(o->acct, t->kind, RATCHET_COUNT_DEFERRED, 1);
    ratchet__orch_publish_task(o, RATCHET_EV_DEFERRED, t, RATCHET_STATUS_NONE,
                               until - now, 0, e->breaker->name,
                               "circuit breaker open");
    d->verdict = RATCHET_DEFER;
    d->until_ns = until;
    return;
  }
  if (!t->breaker_permit || a == NULL)
    return;
  t->breaker_permit = false;
  ratchet_breaker_outcome out = RATCHET_BREAKER_IGNORED;
  if (at == RATCHET_AT_SUCCESS)
    out = RATCHET_BREAKER_SUCCESS;
  else if (at == RATCHET_AT_FAILURE && counts_as_failure(a->status))
    out = RATCHET_BREAKER_FAILURE;
  else if (at == RATCHET_AT_LOST && a->crash)
    out = RATCHET_BREAKER_FAILURE;
  ratchet_breaker_record(b, out, a->run_ns, now);
}

/* ----------------------------------------------------------------- retry */

static void sys_retry(RATCHET__RUN_ARGS) {
  (void)ctx;
  task_ext *e = t->ext;
  if (at == RATCHET_AT_DISPATCH) {
    if (o->budget != NULL && t->attempts == 0)
      ratchet_retry_budget_deposit(o->budget, now);
    return;
  }
  if (e == NULL || !e->has_retry || a == NULL)
    return;
  if (!(e->retry.retry_on & RATCHET_RETRY_ON_BIT(a->status)))
    return;
  /* Attempts lost with their worker were not the handler's failures: they
   * are redispatched without using up a retry (the poison threshold bounds
   * them instead). */
  uint32_t tried = t->attempts - e->lost_attempts;
  if (tried >= e->retry.max_attempts)
    return;
  uint64_t delay = ratchet_backoff_delay(
      &e->retry.backoff, tried, e->prev_delay_ns, ratchet__orch_random(o));
  if (e->deadline_at != 0 && now + delay >= e->deadline_at)
    return;
  if (o->budget != NULL && ratchet_retry_budget_withdraw(o->budget, now) != 0)
    return;
  e->prev_delay_ns = delay;
  d->verdict = RATCHET_RETRY;
  d->delay_ns = delay;
}

/* -------------------------------------------------------------- produces */

static void sys_produces(RATCHET__RUN_ARGS) {
  (void)ctx, (void)at, (void)now, (void)d;
  task_ext *e = t->ext;
  if (e == NULL || !e->has_produces || a == NULL || a->result == NULL ||
      a->result->n_children == 0)
    return;
  ratchet_task_spec s = RATCHET_TASK_SPEC_INIT;
  s.priority = t->priority;
  s.timeout_ns = e->timeout_ns;
  s.rate_group = e->rate_group;
  ratchet_policy_retry retry = e->retry;
  if (e->has_retry)
    s.retry = &retry;
  ratchet_policy_breaker br = {NULL, e->breaker_mode};
  if (e->has_breaker && e->breaker != NULL) {
    br.group = e->breaker->name;
    s.breaker = &br;
  }
  s.produces = &e->produces;
  s.metadata = (const char *const *)e->metadata;
  s.on_done = e->produces.on_child;
  s.data = e->produces.child_data;
  size_t n = a->result->n_children;
  if (n > e->produces.max_children) {
    e->children_dropped += (uint32_t)(n - e->produces.max_children);
    for (size_t i = e->produces.max_children; i < n; i++) {
      const Ratchet__V1__ChildTask *c = a->result->children[i];
      char buf[400];
      snprintf(buf, sizeof buf,
               "child %zu (kind '%.100s') dropped: over max_children %u", i,
               c->kind != NULL ? c->kind : "", e->produces.max_children);
      ratchet__orch_publish_task(o, RATCHET_EV_REJECTED, t, RATCHET_STATUS_NONE,
                                 0, 0, NULL, buf);
    }
    n = e->produces.max_children;
  }
  bool was = o->in_api;
  o->in_api = true;
  for (size_t i = 0; i < n; i++) {
    const Ratchet__V1__ChildTask *c = a->result->children[i];
    s.kind = c->kind;
    s.payload = c->payload.data;
    s.payload_len = c->payload.len;
    uint64_t id = atomic_fetch_add(&o->next_id, 1);
    int rc = ratchet__orch_submit_loop(o, &s, id, t->id);
    if (rc != 0) {
      e->children_dropped++;
      char buf[400];
      snprintf(buf, sizeof buf,
               "child %zu (kind '%.100s') not submitted: %.200s", i,
               c->kind != NULL ? c->kind : "",
               o->last_error[0] ? o->last_error : ratchet_strerror(rc));
      ratchet__orch_publish_task(o, RATCHET_EV_REJECTED, t, RATCHET_STATUS_NONE,
                                 0, 0, NULL, buf);
    }
  }
  o->in_api = was;
}

/* ----------------------------------------------------------- dead letter */

static void sys_dead_letter(RATCHET__RUN_ARGS) {
  (void)ctx, (void)at, (void)now, (void)d;
  const ratchet_orch_result *r = a->final;
  if (r == NULL || !(o->opt.dead_letter_on & RATCHET_RETRY_ON_BIT(r->status)))
    return;
  if (o->dead_letter_fd < 0 && o->opt.on_dead_letter == NULL)
    return;
  ratchet__acct_count(o->acct, t->kind, RATCHET_COUNT_DEAD_LETTERS, 1);
  ratchet__orch_publish_task(o, RATCHET_EV_DEAD_LETTER, t, r->status, 0, 0,
                             NULL, r->error);
  if (o->dead_letter_fd >= 0)
    ratchet__deadletter_write(o, t, r);
  if (o->opt.on_dead_letter != NULL)
    o->opt.on_dead_letter(o, r, (const char *)t->payload, t->payload_len,
                          o->opt.data);
}

/* ------------------------------------------------------------ accounting */

static void sys_accounting(RATCHET__RUN_ARGS) {
  (void)ctx, (void)at, (void)d;
  const ratchet_orch_result *r = a->final;
  if (r == NULL)
    return;
  bool ran = t->first_dispatch_ns != 0;
  ratchet__acct_final(o->acct, t->kind, r->status, ran,
                      ran ? t->first_dispatch_ns - t->submitted_ns : 0,
                      r->run_ns, now - t->submitted_ns);
}

#define AT(p) RATCHET_AT_BIT(RATCHET_AT_##p)

const ratchet_system ratchet__builtin_systems[] = {
    {"dedupe", AT(SUBMIT) | AT(DISPATCH), ratchet__sys_dedupe, NULL, NULL},
    {"cache", AT(SUBMIT) | AT(SUCCESS), sys_cache, NULL, NULL},
    {"delay", AT(SUBMIT), sys_delay, NULL, NULL},
    {"expiry", AT(DISPATCH), sys_expiry, NULL, NULL},
    {"rate_limit", AT(DISPATCH), sys_rate_limit, NULL, NULL},
    {"breaker", AT(DISPATCH) | AT(SUCCESS) | AT(FAILURE) | AT(LOST),
     sys_breaker, NULL, NULL},
    {"retry", AT(DISPATCH) | AT(FAILURE), sys_retry, NULL, NULL},
    {"produces", AT(SUCCESS), sys_produces, NULL, NULL},
    {"dead_letter", AT(FINAL), sys_dead_letter, NULL, NULL},
    {"accounting", AT(FINAL), sys_accounting, NULL, NULL},
};

const size_t ratchet__n_builtin_systems =
    sizeof ratchet__builtin_systems / sizeof ratchet__builtin_systems[0];
