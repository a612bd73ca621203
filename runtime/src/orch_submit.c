/*
 * orch_submit.c - turning a ratchet_task_spec into a task: validation with
 * an explanation for every refusal (ratchet_orch_last_error), the copy of
 * everything the spec points at, the SUBMIT systems, and the deep copy
 * that ratchet_orch_submit_async hands from another thread to the loop.
 *
 * A plain task (kind and payload only) is one allocation; policies go to
 * the task's ext, allocated only when the spec carries one.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "orch_internal.h"
#include "ratchet/alloc.h"
#include "ratchet/clock.h"
#include "ratchet/error.h"

/* The pool serving kind, or -1. */
static int route(const ratchet_orch *o, const char *kind) {
  for (uint32_t i = 0; i < o->n_pools; i++) {
    char **k = o->pools[i]->kinds;
    if (k == NULL)
      return (int)i;
    for (; *k != NULL; k++)
      if (strcmp(*k, kind) == 0)
        return (int)i;
  }
  return -1;
}

static int bad(ratchet_orch *o, const char *what) {
  ratchet__orch_error(o, "%s", what);
  return -EINVAL;
}

/* Checks a spec; returns 0 or -EINVAL with the reason in last_error. */
static int validate(ratchet_orch *o, const ratchet_task_spec *s,
                    bool need_done) {
  if (s->kind == NULL || s->kind[0] == '\0')
    return bad(o, "spec.kind is empty");
  if (strlen(s->kind) > MAX_KIND)
    return bad(o, "spec.kind is longer than 1024 bytes");
  if (s->payload_len > RATCHET_ORCH_MAX_PAYLOAD)
    return bad(o, "spec.payload_len is over RATCHET_ORCH_MAX_PAYLOAD (64 MiB)");
  if (s->payload_len > 0 && s->payload == NULL)
    return bad(o, "spec.payload is NULL but payload_len is not 0");
  if (s->priority < RATCHET_PRIORITY_MIN || s->priority > RATCHET_PRIORITY_MAX)
    return bad(o, "spec.priority is outside -8 .. 7");
  if (need_done && s->on_done == NULL)
    return bad(o, "spec.on_done is NULL");
  if ((s->pin_pool == RATCHET_NO_PIN) != (s->pin_worker == RATCHET_NO_PIN))
    return bad(o, "spec.pin_pool and spec.pin_worker must be set together");
  if (s->pin_pool != RATCHET_NO_PIN) {
    if (s->pin_pool < 0 || (uint32_t)s->pin_pool >= o->n_pools)
      return bad(o, "spec.pin_pool names no pool");
    if (s->pin_worker < 0 || (uint32_t)s->pin_worker >= RATCHET_POOL_MAX_SIZE)
      return bad(o, "spec.pin_worker is out of range");
    ratchet_pool_stats st;
    ratchet_pool_stats_get(o->pools[s->pin_pool]->pool, &st);
    if ((uint32_t)s->pin_worker >= st.size)
      return bad(o, "spec.pin_worker is not a worker of spec.pin_pool");
  }
  if (s->affinity_key != NULL &&
      (s->affinity_len == 0 || s->affinity_len > MAX_GROUP))
    return bad(o, "spec.affinity_len must be 1 .. 1024 with an affinity_key");
  if (s->rate_group != NULL &&
      (s->rate_group[0] == '\0' || strlen(s->rate_group) > MAX_GROUP))
    return bad(o, "spec.rate_group is empty or longer than 1024 bytes");
  if (s->retry != NULL) {
    if (s->retry->max_attempts < 1 || s->retry->max_attempts > 10000)
      return bad(o, "spec.retry->max_attempts is outside 1 .. 10000");
    if (ratchet_backoff_validate(&s->retry->backoff) != 0)
      return bad(o, "spec.retry->backoff is invalid (see ratchet/backoff.h)");
  }
  if (s->breaker != NULL) {
    if (s->breaker->mode != RATCHET_BREAKER_FAIL_FAST &&
        s->breaker->mode != RATCHET_BREAKER_WAIT)
      return bad(o, "spec.breaker->mode is not FAIL_FAST or WAIT");
    if (s->breaker->group != NULL &&
        (s->breaker->group[0] == '\0' || strlen(s->breaker->group) > MAX_GROUP))
      return bad(o, "spec.breaker->group is empty or longer than 1024 bytes");
  }
  if (s->dedupe != NULL) {
    if (s->dedupe->key == NULL || s->dedupe->key_len == 0 ||
        s->dedupe->key_len > MAX_GROUP)
      return bad(o, "spec.dedupe->key must be 1 .. 1024 bytes");
    if (s->dedupe->window_ns == 0)
      return bad(o, "spec.dedupe->window_ns is 0");
    if (s->dedupe->mode != RATCHET_DEDUPE_LEADING &&
        s->dedupe->mode != RATCHET_DEDUPE_TRAILING)
      return bad(o, "spec.dedupe->mode is not LEADING or TRAILING");
  }
  if (s->cache != NULL && o->opt.cache == NULL)
    return bad(o, "spec.cache is set but the orchestrator has no cache "
                  "(ratchet_orch_options.cache)");
  if (s->produces != NULL &&
      (s->produces->max_children < 1 || s->produces->max_children > 4096))
    return bad(o, "spec.produces->max_children is outside 1 .. 4096");
  if (s->n_components > 0 && s->components == NULL)
    return bad(o, "spec.components is NULL but n_components is not 0");
  for (size_t i = 0; i < s->n_components; i++) {
    if (s->components[i].type < RATCHET_COMPONENT_USER)
      return bad(o, "a spec.components[].type is below RATCHET_COMPONENT_USER");
    if (s->components[i].size > 0 && s->components[i].data == NULL)
      return bad(o, "a spec.components[].data is NULL with a size");
    if (s->components[i].size > (1u << 20))
      return bad(o, "a spec.components[].size is over 1 MiB");
  }
  if (s->metadata != NULL) {
    size_t n = 0;
    while (s->metadata[n] != NULL)
      n++;
    if (n % 2 != 0)
      return bad(o, "spec.metadata has a key without a value");
  }
  return 0;
}

static bool needs_ext(const ratchet_task_spec *s, uint64_t parent_id) {
  return s->delay_ns || s->expire_ns || s->deadline_ns || s->timeout_ns ||
         s->pin_pool != RATCHET_NO_PIN || s->affinity_key || s->rate_group ||
         s->retry || s->breaker || s->dedupe || s->cache || s->produces ||
         s->n_components || s->metadata || parent_id;
}

/* Copies the spec's policies into e. 0 or -ENOMEM. */
static int fill_ext(ratchet_orch *o, task *t, task_ext *e,
                    const ratchet_task_spec *s, uint64_t now) {
  if (s->delay_ns)
    e->not_before = now + s->delay_ns;
  if (s->expire_ns)
    e->expire_at = now + s->expire_ns;
  if (s->deadline_ns)
    e->deadline_at = now + s->deadline_ns;
  e->timeout_ns = s->timeout_ns;
  e->pin_pool = s->pin_pool;
  e->pin_worker = s->pin_worker;
  if (s->affinity_key != NULL) {
    e->affinity = ratchet__dup_bytes(s->affinity_key, s->affinity_len);
    if (e->affinity == NULL)
      return -ENOMEM;
    e->affinity_len = s->affinity_len;
  }
  if (s->rate_group != NULL) {
    e->limiter =
        ratchet__strmap_get(o->limiters, s->rate_group, strlen(s->rate_group));
    e->rate_group = ratchet__dup_str(s->rate_group);
    if (e->rate_group == NULL)
      return -ENOMEM;
  }
  if (s->retry != NULL) {
    e->has_retry = true;
    e->retry = *s->retry;
    e->retry.backoff.table_ns = NULL; /* tables are not supported per task */
    if (s->retry->backoff.table_ns != NULL)
      e->retry.backoff.kind = RATCHET_BACKOFF_EXPONENTIAL;
  }
  if (s->breaker != NULL) {
    e->has_breaker = true;
    e->breaker_mode = s->breaker->mode;
    const char *g = s->breaker->group != NULL ? s->breaker->group
                                              : ratchet__kind_name(t->kind);
    e->breaker = ratchet__orch_breaker(o, g);
    if (e->breaker == NULL)
      return -ENOMEM;
  }
  if (s->dedupe != NULL) {
    e->has_dedupe = true;
    e->dedupe = *s->dedupe;
    e->dedupe.key = ratchet__dup_bytes(s->dedupe->key, s->dedupe->key_len);
    if (e->dedupe.key == NULL)
      return -ENOMEM;
  }
  if (s->cache != NULL) {
    e->has_cache = true;
    e->cache = *s->cache;
    e->cache.salt = NULL;
    if (s->cache->salt != NULL) {
      e->cache.salt = ratchet__dup_str(s->cache->salt);
      if (e->cache.salt == NULL)
        return -ENOMEM;
    }
  }
  if (s->produces != NULL) {
    e->has_produces = true;
    e->produces = *s->produces;
  }
  if (s->n_components > 0) {
    size_t bytes = s->n_components * sizeof(ratchet_component);
    for (size_t i = 0; i < s->n_components; i++)
      bytes += s->components[i].size;
    e->components = ratchet_malloc(bytes);
    if (e->components == NULL)
      return -ENOMEM;
    unsigned char *p = (unsigned char *)(e->components + s->n_components);
    for (size_t i = 0; i < s->n_components; i++) {
      e->components[i] = s->components[i];
      e->components[i].data = p;
      if (s->components[i].size > 0)
        memcpy(p, s->components[i].data, s->components[i].size);
      p += s->components[i].size;
    }
    e->n_components = s->n_components;
  }
  if (s->metadata != NULL) {
    size_t n = 0;
    while (s->metadata[n] != NULL)
      n++;
    e->metadata = ratchet_calloc(n + 1, sizeof *e->metadata);
    if (e->metadata == NULL)
      return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
      e->metadata[i] = ratchet__dup_str(s->metadata[i]);
      if (e->metadata[i] == NULL)
        return -ENOMEM;
    }
    e->n_metadata = n / 2;
  }
  return 0;
}

int ratchet__orch_submit_loop(ratchet_orch *o, const ratchet_task_spec *s,
                              uint64_t id, uint64_t parent_id) {
  if (o->closing) {
    ratchet__orch_error(o, "the orchestrator is closing");
    return -ESHUTDOWN;
  }
  int rc = validate(o, s, parent_id == 0);
  if (rc != 0)
    return rc;
  int pool = s->pin_pool != RATCHET_NO_PIN ? s->pin_pool : route(o, s->kind);
  if (pool < 0) {
    ratchet__orch_error(o, "no pool serves kind '%s'", s->kind);
    return RATCHET_ENOPOOL;
  }
  if (o->pools[pool]->failed) {
    ratchet__orch_error(o, "%s", o->pools[pool]->fail_reason);
    return RATCHET_ENOPOOL;
  }
  if (s->rate_group != NULL &&
      ratchet__strmap_get(o->limiters, s->rate_group, strlen(s->rate_group)) ==
          NULL) {
    ratchet__orch_error(o,
                        "rate group '%s' is not configured "
                        "(ratchet_orch_rate_limit)",
                        s->rate_group);
    return RATCHET_ENOGROUP;
  }
  if (o->waiting >= o->opt.max_queued) {
    o->want_room = true;
    ratchet__orch_error(o, "the queue is full (%u tasks waiting)",
                        o->opt.max_queued);
    return -EAGAIN;
  }
  ratchet__kind *kind = ratchet__acct_kind(o->acct, s->kind, strlen(s->kind));
  if (kind == NULL)
    return -ENOMEM;
  task *t = ratchet_malloc(sizeof *t + s->payload_len);
  if (t == NULL)
    return -ENOMEM;
  memset(t, 0, sizeof *t);
  uint64_t now = ratchet_now_ns();
  t->id = id;
  t->kind = kind;
  t->on_done = s->on_done;
  t->data = s->data;
  t->submitted_ns = now;
  t->payload_len = (uint32_t)s->payload_len;
  if (s->payload_len > 0)
    memcpy(t->payload, s->payload, s->payload_len);
  t->pool = (uint16_t)pool;
  t->priority = (int8_t)s->priority;
  t->worker = -1;
  t->state = TS_NEW;
  if (needs_ext(s, parent_id)) {
    task_ext *e = ratchet__orch_ext(o, t);
    if (e == NULL || fill_ext(o, t, e, s, now) != 0) {
      ratchet__task_free(t);
      return -ENOMEM;
    }
    e->parent_id = parent_id;
  }
  if (ratchet__idmap_put(&o->tasks, t->id, t) != 0) {
    ratchet__task_free(t);
    return -ENOMEM;
  }
  /* Accepted: from here on, the task gets exactly one outcome. */
  o->live++;
  ratchet__acct_count(o->acct, kind, RATCHET_COUNT_SUBMITTED, 1);
  bool was_in_api = o->in_api;
  o->in_api = true;
  ratchet__orch_publish_task(o, RATCHET_EV_SUBMITTED, t, RATCHET_STATUS_NONE, 0,
                             0, NULL, NULL);
  char why[MAX_ERROR_TEXT];
  ratchet_decision d = ratchet__orch_run_systems(o, t, RATCHET_AT_SUBMIT, NULL,
                                                 now, why, sizeof why);
  if (t->state == TS_FOLLOWER) {
    /* Joined an identical task. */
  } else if (d.verdict == RATCHET_DEFER) {
    if (ratchet__orch_schedule(o, t, d.until_ns, false) != 0)
      ratchet__orch_finish_with(o, t, RATCHET_STATUS_LOST,
                                "out of memory delaying the task");
  } else if (d.verdict == RATCHET_FINISH || d.verdict == RATCHET_RETRY) {
    ratchet__orch_finish_with(
        o, t,
        d.status != RATCHET_STATUS_NONE ? d.status : RATCHET_STATUS_FAILED,
        d.reason);
  } else {
    ratchet__orch_enqueue(o, t, false);
  }
  o->in_api = was_in_api;
  return 0;
}

int ratchet_orch_submit(ratchet_orch *o, const ratchet_task_spec *spec,
                        uint64_t *id) {
  if (o == NULL || spec == NULL)
    return -EINVAL;
  o->last_error[0] = '\0';
  uint64_t n = atomic_fetch_add(&o->next_id, 1);
  int rc = ratchet__orch_submit_loop(o, spec, n, 0);
  if (rc == 0 && id != NULL)
    *id = n;
  return rc;
}

/* ---------------------------------------------------- the async hand-over */

/* A bump allocator over one block, for the deep copy of a spec. */
typedef struct bump {
  unsigned char *p;
  size_t used, cap;
} bump;

static void *bump_copy(bump *b, const void *src, size_t n, size_t align) {
  if (src == NULL)
    return NULL; /* absent stays absent: a NULL affinity_key, ... */
  b->used = (b->used + align - 1) & ~(align - 1);
  void *d = b->p != NULL ? b->p + b->used : NULL;
  if (d != NULL && n > 0)
    memcpy(d, src, n);
  b->used += n;
  return d;
}

static const char *bump_str(bump *b, const char *s) {
  return s != NULL ? bump_copy(b, s, strlen(s) + 1, 1) : NULL;
}

/* Copies s into b (b->p NULL: only measures). */
static void copy_spec(bump *b, const ratchet_task_spec *s,
                      ratchet_task_spec *d) {
  const size_t A = sizeof(void *) > 8 ? sizeof(void *) : 8;
  *d = *s;
  d->kind = bump_str(b, s->kind);
  d->payload = bump_copy(b, s->payload, s->payload_len, 1);
  d->affinity_key = bump_copy(b, s->affinity_key, s->affinity_len, 1);
  d->rate_group = bump_str(b, s->rate_group);
  if (s->retry != NULL)
    d->retry = bump_copy(b, s->retry, sizeof *s->retry, A);
  if (s->breaker != NULL) {
    ratchet_policy_breaker *pb =
        bump_copy(b, s->breaker, sizeof *s->breaker, A);
    const char *g = bump_str(b, s->breaker->group);
    if (pb != NULL)
      pb->group = g;
    d->breaker = pb;
  }
  if (s->dedupe != NULL) {
    ratchet_policy_dedupe *pd = bump_copy(b, s->dedupe, sizeof *s->dedupe, A);
    const void *k = bump_copy(b, s->dedupe->key, s->dedupe->key_len, 1);
    if (pd != NULL)
      pd->key = k;
    d->dedupe = pd;
  }
  if (s->cache != NULL) {
    ratchet_policy_cache *pc = bump_copy(b, s->cache, sizeof *s->cache, A);
    const char *salt = bump_str(b, s->cache->salt);
    if (pc != NULL)
      pc->salt = salt;
    d->cache = pc;
  }
  if (s->produces != NULL)
    d->produces = bump_copy(b, s->produces, sizeof *s->produces, A);
  if (s->n_components > 0 && s->components != NULL) {
    ratchet_component *pc =
        bump_copy(b, s->components, s->n_components * sizeof *s->components, A);
    for (size_t i = 0; i < s->n_components; i++) {
      const void *data =
          bump_copy(b, s->components[i].data, s->components[i].size, A);
      if (pc != NULL)
        pc[i].data = data;
    }
    d->components = pc;
  }
  if (s->metadata != NULL) {
    size_t n = 0;
    while (s->metadata[n] != NULL)
      n++;
    const char **pm = bump_copy(b, s->metadata, (n + 1) * sizeof(char *), A);
    for (size_t i = 0; i < n; i++) {
      const char *v = bump_str(b, s->metadata[i]);
      if (pm != NULL)
        pm[i] = v;
    }
    d->metadata = (const char *const *)pm;
  }
}

int ratchet_orch_submit_async(ratchet_orch *o, const ratchet_task_spec *spec,
                              uint64_t *id) {
  if (o == NULL || spec == NULL || spec->on_done == NULL || spec->kind == NULL)
    return -EINVAL;
  if (spec->payload_len > 0 && spec->payload == NULL)
    return -EINVAL;
  bump b = {NULL, 0, 0};
  ratchet_task_spec tmp;
  copy_spec(&b, spec, &tmp);
  async_item *it = ratchet_malloc(sizeof *it);
  if (it == NULL)
    return -ENOMEM;
  it->blob = ratchet_malloc(b.used ? b.used : 1);
  if (it->blob == NULL) {
    ratchet_free(it);
    return -ENOMEM;
  }
  bump real = {it->blob, 0, b.used};
  copy_spec(&real, spec, &it->spec);
  it->next = NULL;
  pthread_mutex_lock(&o->async_lock);
  if (o->async_closed) {
    pthread_mutex_unlock(&o->async_lock);
    ratchet_free(it->blob);
    ratchet_free(it);
    return -ESHUTDOWN;
  }
  uint64_t n = atomic_fetch_add(&o->next_id, 1);
  it->id = n;
  if (o->async_tail != NULL)
    o->async_tail->next = it;
  else
    o->async_head = it;
  o->async_tail = it;
  uv_async_send(&o->async);
  pthread_mutex_unlock(&o->async_lock);
  /* Not it->id: once unlocked, the loop may have run and freed it. */
  if (id != NULL)
    *id = n;
  return 0;
}

/* Ends a handed-over task that could not be submitted: its callback still
 * runs exactly once, with LOST and the reason. */
static void async_refused(ratchet_orch *o, async_item *it, int rc) {
  ratchet_orch_result r;
  memset(&r, 0, sizeof r);
  char buf[400];
  snprintf(buf, sizeof buf, "submit_async: %s%s%s", ratchet_strerror(rc),
           o->last_error[0] ? ": " : "", o->last_error);
  r.id = it->id;
  r.kind = it->spec.kind;
  r.status = o->closing ? RATCHET_STATUS_SHUTDOWN : RATCHET_STATUS_LOST;
  r.error = buf;
  r.pool = -1;
  r.worker = -1;
  uint64_t now = ratchet_now_ns();
  r.submitted_ns = r.finished_ns = now;
  it->spec.on_done(o, &r, it->spec.data);
}

/* Takes every handed-over task (all of them when closing). */
void ratchet__orch_async_drain(ratchet_orch *o) {
  pthread_mutex_lock(&o->async_lock);
  async_item *it = o->async_head;
  o->async_head = o->async_tail = NULL;
  pthread_mutex_unlock(&o->async_lock);
  while (it != NULL) {
    async_item *next = it->next;
    o->last_error[0] = '\0';
    int rc = ratchet__orch_submit_loop(o, &it->spec, it->id, 0);
    if (rc != 0)
      async_refused(o, it, rc);
    ratchet_free(it->blob);
    ratchet_free(it);
    it = next;
  }
}
