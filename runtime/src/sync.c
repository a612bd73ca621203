/*
 * sync.c - the blocking layer (ratchet/sync.h). Outcomes are copied, as
 * they arrive, into one allocation each and kept in a map by task id until
 * the program waits for them; waiting runs the private loop one turn at a
 * time until the wanted id is in the map.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "orch_internal.h"
#include "ratchet/alloc.h"
#include "ratchet/sync.h"

/* The map holds PENDING for a task that has not ended yet. */
static char pending_mark;
#define PENDING ((void *)&pending_mark)

struct ratchet_sync {
  uv_loop_t loop;
  ratchet_orch *orch;
  ratchet__idmap results;
  bool room;
  bool closed;
};

static void on_done(ratchet_orch *o, const ratchet_orch_result *r, void *data) {
  (void)o;
  ratchet_sync *s = data;
  if (ratchet__idmap_get(&s->results, r->id) != PENDING)
    return;
  /* Spilled files are deleted after this callback: the result keeps a
   * second name (a hard link) of its own, deleted by result_free. */
  char *so = ratchet__spill_link(r->stdout_path);
  char *se = ratchet__spill_link(r->stderr_path);
  size_t kl = strlen(r->kind) + 1, el = strlen(r->error) + 1;
  size_t sol = so != NULL ? strlen(so) + 1 : 0;
  size_t sel = se != NULL ? strlen(se) + 1 : 0;
  ratchet_sync_result *c = ratchet_malloc(sizeof *c + kl + el + r->output_len +
                                          r->stderr_len + sol + sel);
  if (c == NULL) {
    /* Nothing to hand out: the wait reports -ENOMEM. */
    if (so != NULL)
      (void)unlink(so);
    if (se != NULL)
      (void)unlink(se);
    ratchet_free(so);
    ratchet_free(se);
    ratchet__idmap_del(&s->results, r->id);
    return;
  }
  c->r = *r;
  char *p = (char *)(c + 1);
  memcpy(p, r->kind, kl);
  c->r.kind = p;
  p += kl;
  memcpy(p, r->error, el);
  c->r.error = p;
  p += el;
  c->r.output = NULL;
  if (r->output_len > 0) {
    memcpy(p, r->output, r->output_len);
    c->r.output = p;
    p += r->output_len;
  }
  c->r.stderr_data = NULL;
  if (r->stderr_len > 0) {
    memcpy(p, r->stderr_data, r->stderr_len);
    c->r.stderr_data = p;
    p += r->stderr_len;
  }
  c->r.stdout_path = c->r.stderr_path = NULL;
  if (so != NULL) {
    memcpy(p, so, sol);
    c->r.stdout_path = p;
    p += sol;
  }
  if (se != NULL) {
    memcpy(p, se, sel);
    c->r.stderr_path = p;
  }
  ratchet_free(so);
  ratchet_free(se);
  (void)ratchet__idmap_put(&s->results, r->id, c); /* replaces: no alloc */
}

static void on_room(ratchet_orch *o, void *data) {
  (void)o;
  ((ratchet_sync *)data)->room = true;
}

static void closed_cb(void *data) {
  ((ratchet_sync *)data)->closed = true;
}

static void drop(void *ctx, uint64_t id, void *val) {
  (void)ctx, (void)id;
  if (val != PENDING)
    ratchet_sync_result_free(val);
}

static void destroy(ratchet_sync *s) {
  if (s->orch != NULL) {
    ratchet_orch_close(s->orch, closed_cb);
    while (!s->closed)
      uv_run(&s->loop, UV_RUN_ONCE);
  }
  ratchet__idmap_foreach(&s->results, drop, NULL);
  ratchet__idmap_free(&s->results);
  uv_run(&s->loop, UV_RUN_NOWAIT);
  (void)uv_loop_close(&s->loop);
  ratchet_free(s);
}

int ratchet_sync_new(const ratchet_sync_options *o, ratchet_sync **out,
                     char *err, size_t err_len) {
  if (o == NULL || out == NULL || (o->n_pools > 0 && o->pools == NULL)) {
    if (err != NULL && err_len > 0)
      snprintf(err, err_len, "NULL options, out or pools");
    return -EINVAL;
  }
  ratchet_sync *s = ratchet_calloc(1, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  ratchet__idmap_init(&s->results);
  int rc = uv_loop_init(&s->loop);
  if (rc != 0) {
    ratchet_free(s);
    return rc;
  }
  ratchet_orch_options oo = o->orch;
  oo.data = s;
  oo.on_room = on_room;
  rc = ratchet_orch_new(&s->loop, &oo, &s->orch);
  if (rc != 0) {
    if (err != NULL && err_len > 0)
      snprintf(err, err_len, "orchestrator: %s", "invalid options");
    s->orch = NULL;
    destroy(s);
    return rc;
  }
  for (size_t i = 0; i < o->n_pools; i++) {
    rc = ratchet_orch_add_pool(s->orch, &o->pools[i].pool, o->pools[i].kinds);
    if (rc < 0) {
      if (err != NULL && err_len > 0)
        snprintf(err, err_len, "pool %zu: invalid options or no memory", i);
      destroy(s);
      return rc;
    }
  }
  rc = ratchet_orch_start(s->orch);
  if (rc != 0) {
    if (err != NULL && err_len > 0)
      snprintf(err, err_len, "start: %s", ratchet_orch_last_error(s->orch));
    destroy(s);
    return rc;
  }
  *out = s;
  return 0;
}

int ratchet_sync_submit(ratchet_sync *s, const ratchet_task_spec *spec,
                        uint64_t *id) {
  if (s == NULL || spec == NULL)
    return -EINVAL;
  ratchet_task_spec c = *spec;
  c.on_done = on_done;
  c.data = s;
  for (;;) {
    uint64_t n = 0;
    s->room = false;
    int rc = ratchet_orch_submit(s->orch, &c, &n);
    if (rc == -EAGAIN) {
      while (!s->room)
        uv_run(&s->loop, UV_RUN_ONCE);
      continue;
    }
    if (rc != 0)
      return rc;
    rc = ratchet__idmap_put(&s->results, n, PENDING);
    if (rc != 0) {
      (void)ratchet_orch_cancel(s->orch, n); /* its outcome is dropped */
      return rc;
    }
    if (id != NULL)
      *id = n;
    return 0;
  }
}

int ratchet_sync_wait(ratchet_sync *s, uint64_t id, ratchet_sync_result **out) {
  if (s == NULL || out == NULL)
    return -EINVAL;
  void *v = ratchet__idmap_get(&s->results, id);
  if (v == NULL)
    return -ENOENT;
  while ((v = ratchet__idmap_get(&s->results, id)) == PENDING)
    uv_run(&s->loop, UV_RUN_ONCE);
  if (v == NULL)
    return -ENOMEM;
  ratchet__idmap_del(&s->results, id);
  *out = v;
  return 0;
}

int ratchet_sync_run(ratchet_sync *s, const ratchet_task_spec *spec,
                     ratchet_sync_result **out) {
  uint64_t id;
  int rc = ratchet_sync_submit(s, spec, &id);
  return rc != 0 ? rc : ratchet_sync_wait(s, id, out);
}

ratchet_orch *ratchet_sync_orch(ratchet_sync *s) {
  return s != NULL ? s->orch : NULL;
}

void ratchet_sync_result_free(ratchet_sync_result *r) {
  ratchet_free(r);
}

void ratchet_sync_free(ratchet_sync *s) {
  if (s != NULL)
    destroy(s);
}
