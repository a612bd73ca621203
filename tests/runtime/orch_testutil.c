/*
 * orch_testutil.c - the orchestrator tests' worker process and harness (see
 * orch_testutil.h). The harness records every completion by task id and
 * every event in arrays that grow as needed; the checks that apply to every
 * test (one callback per task, on the loop's thread; nothing left behind)
 * are made by ot_close, after the orchestrator has called back.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "orch_testutil.h"
#include "ratchet/clock.h"
#include "ratchet/worker.h"

/* ---- the chaos plan ---------------------------------------------------- */

/* A well-mixed hash of i, so that the classes are spread over the ids. */
static uint32_t mix(uint32_t i) {
  uint32_t x = i * 0x9e3779b1u;
  x ^= x >> 15;
  x *= 0x85ebca6bu;
  x ^= x >> 13;
  return x;
}

ot_chaos_class ot_chaos_class_of(uint32_t i) {
  if (i % 4999 == 17)
    return OT_CHAOS_PILL;
  uint32_t h = mix(i) % 100;
  if (h < 10)
    return OT_CHAOS_ALWAYS;
  if (h < 35)
    return OT_CHAOS_TRANSIENT;
  return OT_CHAOS_OK;
}

uint32_t ot_chaos_fail_below(uint32_t i) {
  return 2 + (mix(i) >> 8) % 2;
}

/* ---- the handlers ------------------------------------------------------ */

static unsigned parse_u(const uint8_t *p, size_t len) {
  unsigned v = 0;
  for (size_t i = 0; i < len && p[i] >= '0' && p[i] <= '9'; i++)
    v = v * 10 + (unsigned)(p[i] - '0');
  return v;
}

static int h_echo(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  size_t len;
  const uint8_t *p = ratchet_task_payload(ctx, &len);
  return ratchet_task_set_output(ctx, p, len);
}

static int h_fail(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  ratchet_task_set_status(ctx, RATCHET_TASK_FAILED);
  ratchet_task_set_error(ctx, "always fails (attempt %u)",
                         ratchet_task_attempt(ctx));
  return 0;
}

static int h_flaky(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  size_t len;
  const uint8_t *p = ratchet_task_payload(ctx, &len);
  if (ratchet_task_attempt(ctx) <= parse_u(p, len)) {
    ratchet_task_set_status(ctx, RATCHET_TASK_FAILED);
    ratchet_task_set_error(ctx, "flaky attempt %u", ratchet_task_attempt(ctx));
    return 0;
  }
  return ratchet_task_set_output(ctx, p, len);
}

static int h_status(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  size_t len;
  const uint8_t *p = ratchet_task_payload(ctx, &len);
  unsigned s = parse_u(p, len);
  ratchet_task_set_status(ctx, (ratchet_task_status)s);
  ratchet_task_set_error(ctx, "status %u", s);
  return 0;
}

static int h_sleep(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  (void)ratchet_task_log(ctx, RATCHET_LOG_INFO, "started");
  size_t len;
  const uint8_t *p = ratchet_task_payload(ctx, &len);
  uint64_t end = ratchet_now_ns() + OT_MS(parse_u(p, len));
  while (ratchet_now_ns() < end) {
    if (ratchet_task_cancelled(ctx))
      return ratchet_task_set_output(ctx, "saw-cancel", 10);
    usleep(1000);
  }
  return ratchet_task_set_output(ctx, p, len);
}

static int h_hang(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  (void)ratchet_task_log(ctx, RATCHET_LOG_INFO, "started");
  for (int i = 0; i < 600; i++)
    sleep(1);
  return 0;
}

static int h_die(void *data, ratchet_task_ctx *ctx) {
  (void)data, (void)ctx;
  _exit(3);
}

static int h_pid(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  char buf[32];
  int n = snprintf(buf, sizeof buf, "%d", (int)getpid());
  return ratchet_task_set_output(ctx, buf, (size_t)n);
}

static int h_produce(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  size_t len;
  const uint8_t *p = ratchet_task_payload(ctx, &len);
  unsigned n = parse_u(p, len);
  for (unsigned i = 0; i < n; i++) {
    char buf[32];
    int k = snprintf(buf, sizeof buf, "child-%u", i);
    int rc = ratchet_task_produce(ctx, "echo", buf, (size_t)k);
    if (rc != 0)
      return rc;
  }
  return ratchet_task_set_output(ctx, p, len);
}

static int h_meta(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  size_t len;
  const uint8_t *p = ratchet_task_payload(ctx, &len);
  const char *k = ratchet_task_meta(ctx, "k");
  char buf[128];
  int n = snprintf(buf, sizeof buf, "%s|%.*s", k != NULL ? k : "(none)",
                   (int)(len < 64 ? len : 64), (const char *)p);
  return ratchet_task_set_output(ctx, buf, (size_t)n);
}

static int h_chaos(void *data, ratchet_task_ctx *ctx) {
  (void)data;
  size_t len;
  const uint8_t *p = ratchet_task_payload(ctx, &len);
  uint32_t i = parse_u(p, len), attempt = ratchet_task_attempt(ctx);
  switch (ot_chaos_class_of(i)) {
  case OT_CHAOS_PILL:
    _exit(4);
  case OT_CHAOS_ALWAYS:
    ratchet_task_set_status(ctx, RATCHET_TASK_FAILED);
    ratchet_task_set_error(ctx, "chaos %u always fails", i);
    return 0;
  case OT_CHAOS_TRANSIENT:
    if (attempt < ot_chaos_fail_below(i)) {
      ratchet_task_set_status(ctx, RATCHET_TASK_FAILED);
      ratchet_task_set_error(ctx, "chaos %u attempt %u fails", i, attempt);
      return 0;
    }
    break;
  case OT_CHAOS_OK:
    break;
  }
  return ratchet_task_set_output(ctx, p, len);
}

static const struct {
  const char *kind;
  ratchet_handler_fn fn;
} handlers[] = {
    {"echo", h_echo},     {"fail", h_fail},   {"flaky", h_flaky},
    {"status", h_status}, {"sleep", h_sleep}, {"hang", h_hang},
    {"die", h_die},       {"pid", h_pid},     {"produce", h_produce},
    {"meta", h_meta},     {"chaos", h_chaos},
};

static int make_worker(int parent_pid, ratchet_worker **out) {
  ratchet_worker_options wo = RATCHET_WORKER_OPTIONS_INIT;
  wo.name = "orch-test-worker";
  wo.parent_pid = parent_pid;
  ratchet_worker *w;
  int rc = ratchet_worker_new(&wo, &w);
  if (rc != 0)
    return rc;
  for (size_t i = 0; i < TU_ARRAY_LEN(handlers); i++) {
    rc = ratchet_worker_register(w, handlers[i].kind, handlers[i].fn, NULL);
    if (rc != 0) {
      ratchet_worker_free(w);
      return rc;
    }
  }
  *out = w;
  return 0;
}

/* "--child orch-worker" */
int tu_child_orch_worker(int argc, char **argv) {
  (void)argc, (void)argv;
  ratchet_worker *w;
  if (make_worker(0, &w) != 0)
    return RATCHET_WORKER_EXIT_SYSTEM;
  int rc = ratchet_worker_main(w);
  ratchet_worker_free(w);
  return rc;
}

/* ---- the harness ------------------------------------------------------- */

bool ot_under_valgrind(void) {
  const char *p = getenv("LD_PRELOAD");
  return p != NULL && strstr(p, "vgpreload") != NULL;
}

static void grow(void **v, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap)
    return;
  size_t n = *cap ? *cap : 64;
  while (n < need)
    n *= 2;
  void *p = realloc(*v, n * elem);
  assert_non_null(p);
  memset((char *)p + *cap * elem, 0, (n - *cap) * elem);
  *v = p;
  *cap = n;
}

static ot_res *res_slot(ot *t, uint64_t id) {
  grow((void **)&t->res, &t->cap_res, (size_t)id + 1, sizeof *t->res);
  return &t->res[id];
}

void ot_on_done(ratchet_orch *o, const ratchet_orch_result *r, void *data) {
  (void)o;
  ot *t = data;
  if (!pthread_equal(pthread_self(), t->loop_thread))
    t->off_thread++;
  ot_res *x = res_slot(t, r->id);
  if (x->calls++ > 0) {
    t->dup_calls++;
    return;
  }
  x->order = ++t->n_done;
  x->status = r->status;
  x->attempts = r->attempts;
  x->crashes = r->crashes;
  x->cached = r->cached;
  x->coalesced = r->coalesced;
  x->related_id = r->related_id;
  x->pool = r->pool;
  x->worker = r->worker;
  x->submitted_ns = r->submitted_ns;
  x->first_dispatch_ns = r->first_dispatch_ns;
  x->finished_ns = r->finished_ns;
  snprintf(x->kind, sizeof x->kind, "%s", r->kind);
  x->output_len = r->output_len;
  size_t n = r->output_len < sizeof x->output - 1 ? r->output_len
                                                  : sizeof x->output - 1;
  if (n > 0)
    memcpy(x->output, r->output, n);
  x->output[n] = '\0';
  assert_non_null(r->error);
  snprintf(x->error, sizeof x->error, "%s", r->error);
}

static void on_event(void *ctx, const ratchet_event *ev) {
  ot *t = ctx;
  if (ev->type == RATCHET_EV_WORKER_STARTING) {
    grow((void **)&t->pids, &t->cap_pids, t->n_pids + 1, sizeof *t->pids);
    t->pids[t->n_pids++] = ev->pid;
  }
  if (ev->type == RATCHET_EV_WORKER_READY)
    t->n_ready++;
  if (ev->type == RATCHET_EV_WORKER_EXITED)
    t->n_exited++;
  if (ev->type == RATCHET_EV_WORKER_STDERR) {
    /* A sanitizer build's workers report on stderr: none may. */
    assert_null(strstr(ev->message, "Sanitizer"));
    assert_null(strstr(ev->message, "runtime error:"));
  }
  if (t->ev == NULL && t->cap_ev == SIZE_MAX)
    return; /* not recording */
  grow((void **)&t->ev, &t->cap_ev, t->n_ev + 1, sizeof *t->ev);
  ot_ev *e = &t->ev[t->n_ev++];
  e->type = ev->type;
  e->seq = ev->seq;
  e->time_ns = ev->time_ns;
  e->task_id = ev->task_id;
  e->delay_ns = ev->delay_ns;
  e->related_id = ev->related_id;
  e->attempt = ev->attempt;
  e->worker = ev->worker;
  e->pid = ev->pid;
  e->status = ev->status;
  e->from_state = ev->from_state;
  e->to_state = ev->to_state;
  snprintf(e->kind, sizeof e->kind, "%s", ev->kind);
  snprintf(e->group, sizeof e->group, "%s", ev->group);
  snprintf(e->message, sizeof e->message, "%s", ev->message);
}

static void watchdog_cb(uv_timer_t *h) {
  ot *t = h->data;
  t->timed_out = true;
}

static void sleeper_cb(uv_timer_t *h) {
  ot *t = h->data;
  t->slept = true;
}

static int fork_main(void *arg) {
  return ratchet_worker_main(arg);
}

static const char *self_argv[4];

ratchet_pool_options ot_pool_options(ot *t, const ot_options *oo) {
  ratchet_pool_options po = RATCHET_POOL_OPTIONS_INIT;
  self_argv[0] = tu_self_path();
  self_argv[1] = "--child";
  self_argv[2] = "orch-worker";
  self_argv[3] = NULL;
  po.mode = oo->mode;
  if (oo->mode == RATCHET_POOL_SPAWN) {
    po.argv = self_argv;
  } else {
    assert_int_equal(make_worker((int)getpid(), &t->fork_worker), 0);
    po.worker = t->fork_worker;
    po.fork_main = fork_main;
    po.fork_arg = t->fork_worker;
  }
  po.size = oo->size;
  po.pipeline_depth = oo->depth;
  po.poison_threshold = oo->poison_threshold;
  po.close_grace_ms = oo->close_grace_ms;
  po.kill_grace_ms = oo->kill_grace_ms;
  /* Fast restarts keep the tests short; the policy is the same. */
  po.restart_backoff.initial_ns = OT_MS(1);
  po.restart_backoff.max_delay_ns = OT_MS(10);
  if (oo->limits_off) {
    po.max_restarts = 0;
    po.flap_limit = 0;
  }
  po.seed = 7;
  return po;
}

static unsigned watchdog_ms(void) {
  /* Not a timing threshold: only a guard against a hang. */
  const char *env = getenv("RATCHET_ORCH_WATCHDOG_MS");
  if (env != NULL && atoi(env) > 0)
    return (unsigned)atoi(env);
  return ot_under_valgrind() ? 600000u : 180000u;
}

ot *ot_new(const ot_options *oo, const ratchet_orch_options *opt) {
  ot_options dflt = OT_OPTIONS_INIT;
  if (oo == NULL)
    oo = &dflt;
  ot *t = calloc(1, sizeof *t);
  assert_non_null(t);
  t->fds_before = tu_count_fds();
  t->loop_thread = pthread_self();
  if (!oo->record_events)
    t->cap_ev = SIZE_MAX;
  assert_int_equal(uv_loop_init(&t->loop), 0);
  uv_timer_init(&t->loop, &t->watchdog);
  t->watchdog.data = t;
  uv_unref((uv_handle_t *)&t->watchdog);
  uv_timer_init(&t->loop, &t->sleeper);
  t->sleeper.data = t;
  ratchet_orch_options o = RATCHET_ORCH_OPTIONS_INIT;
  if (opt != NULL)
    o = *opt;
  o.data = t;
  if (o.seed == 0)
    o.seed = 11;
  int rc = ratchet_orch_new(&t->loop, &o, &t->o);
  assert_int_equal(rc, 0);
  ratchet_subscriber_options so = RATCHET_SUBSCRIBER_OPTIONS_INIT;
  so.types = oo->record_events ? RATCHET_EV_ALL
                               : RATCHET_EV_BIT(RATCHET_EV_WORKER_STARTING) |
                                     RATCHET_EV_BIT(RATCHET_EV_WORKER_READY) |
                                     RATCHET_EV_BIT(RATCHET_EV_WORKER_EXITED) |
                                     RATCHET_EV_BIT(RATCHET_EV_WORKER_STDERR);
  so.cb = on_event;
  so.ctx = t;
  assert_int_equal(
      ratchet_events_subscribe(ratchet_orch_events(t->o), &so, &t->sub), 0);
  if (oo->add_pool) {
    ratchet_pool_options po = ot_pool_options(t, oo);
    assert_int_equal(ratchet_orch_add_pool(t->o, &po, oo->kinds), 0);
  }
  if (oo->start)
    ot_start(t, oo->size);
  return t;
}

void ot_start(ot *t, unsigned n) {
  assert_int_equal(ratchet_orch_start(t->o), 0);
  ot_run_until(t, ot_p_ready, n);
}

ratchet_task_spec ot_spec(ot *t, const char *kind, const char *payload) {
  ratchet_task_spec s = RATCHET_TASK_SPEC_INIT;
  s.kind = kind;
  s.payload = payload;
  s.payload_len = payload != NULL ? strlen(payload) : 0;
  s.on_done = ot_on_done;
  s.data = t;
  return s;
}

uint64_t ot_submit(ot *t, const ratchet_task_spec *s) {
  uint64_t id = 0;
  int rc = ratchet_orch_submit(t->o, s, &id);
  if (rc != 0)
    print_error("submit: %d (%s)\n", rc, ratchet_orch_last_error(t->o));
  assert_int_equal(rc, 0);
  assert_true(id != 0);
  /* Never from inside submit. */
  const ot_res *r = ot_result(t, id);
  assert_null(r);
  ot_mark_submitted(t, id);
  return id;
}

void ot_mark_submitted(ot *t, uint64_t id) {
  res_slot(t, id)->submitted = true;
}

void ot_run_until(ot *t, ot_pred pred, uintptr_t arg) {
  uv_timer_start(&t->watchdog, watchdog_cb, watchdog_ms(), 0);
  while (!pred(t, arg)) {
    if (t->timed_out) {
      print_error("watchdog: %u done, %zu events; the last ones:\n", t->n_done,
                  t->n_ev);
      for (size_t i = t->n_ev > 8 ? t->n_ev - 8 : 0; i < t->n_ev; i++)
        print_error("  %s task %llu: %s\n",
                    ratchet_event_type_name(t->ev[i].type),
                    (unsigned long long)t->ev[i].task_id, t->ev[i].message);
    }
    assert_false(t->timed_out);
    uv_ref((uv_handle_t *)&t->watchdog);
    uv_run(&t->loop, UV_RUN_ONCE);
    uv_unref((uv_handle_t *)&t->watchdog);
  }
  uv_timer_stop(&t->watchdog);
}

static bool p_slept(ot *t, uintptr_t arg) {
  (void)arg;
  return t->slept;
}

void ot_sleep_ms(ot *t, unsigned ms) {
  uint64_t end = ratchet_now_ns() + OT_MS(ms);
  for (;;) {
    uint64_t now = ratchet_now_ns();
    if (now >= end)
      return;
    t->slept = false;
    uv_update_time(&t->loop);
    uv_timer_start(&t->sleeper, sleeper_cb, (end - now) / OT_MS(1) + 1, 0);
    ot_run_until(t, p_slept, 0);
  }
}

bool ot_p_done(ot *t, uintptr_t n) {
  return t->n_done >= n;
}

bool ot_p_task_done(ot *t, uintptr_t id) {
  return ot_result(t, id) != NULL;
}

bool ot_p_ready(ot *t, uintptr_t n) {
  return t->n_ready >= n;
}

bool ot_p_closed(ot *t, uintptr_t n) {
  (void)n;
  return t->closed;
}

bool ot_p_event(ot *t, uintptr_t arg) {
  ratchet_event_type type = (ratchet_event_type)(arg >> 56);
  uint64_t id = arg & ((UINT64_C(1) << 56) - 1);
  return ot_find_event(t, type, id, 0) != NULL;
}

const ot_res *ot_result(const ot *t, uint64_t id) {
  if (id >= t->cap_res || t->res[id].calls == 0)
    return NULL;
  return &t->res[id];
}

unsigned ot_count_events(const ot *t, ratchet_event_type type, uint64_t id) {
  unsigned n = 0;
  for (size_t i = 0; i < t->n_ev; i++)
    n += t->ev[i].type == type && (id == 0 || t->ev[i].task_id == id);
  return n;
}

const ot_ev *ot_find_event(const ot *t, ratchet_event_type type, uint64_t id,
                           unsigned nth) {
  for (size_t i = 0; i < t->n_ev; i++)
    if (t->ev[i].type == type && (id == 0 || t->ev[i].task_id == id) &&
        nth-- == 0)
      return &t->ev[i];
  return NULL;
}

int ot_worker_pid(ot *t, uint32_t w) {
  ratchet_pool_worker_stats ws;
  if (ratchet_pool_worker_stats_get(ratchet_orch_pool(t->o, 0), w, &ws) != 0)
    return 0;
  return ws.pid;
}

static void closed_cb(void *data) {
  ot *t = data;
  t->closed = true;
  t->close_calls++;
  t->close_done_snapshot = t->n_done;
}

typedef struct group_query {
  int pgid;
  bool found;
} group_query;

static int scan_one(const tu_proc_stat *st, void *arg) {
  group_query *q = arg;
  if (st->pgrp == q->pgid && st->state != 'Z')
    q->found = true;
  return 0;
}

/* True if a live (non-zombie) process is in the process group pgid. */
static bool group_alive(int pgid) {
  group_query q = {pgid, false};
  tu_proc_scan(scan_one, &q);
  return q.found;
}

typedef struct child_query {
  const int *pids;
  size_t n;
  pid_t me;
  unsigned found;
} child_query;

static int scan_child(const tu_proc_stat *st, void *arg) {
  child_query *q = arg;
  if (st->ppid != q->me)
    return 0;
  /* A worker leads its own process group: pgrp is its pid. */
  for (size_t i = 0; i < q->n; i++)
    if (st->pgrp == q->pids[i])
      q->found++;
  return 0;
}

/* Children of ours (zombies included) that are workers the pool started. */
static unsigned count_children(const ot *t) {
  child_query q = {t->pids, t->n_pids, getpid(), 0};
  tu_proc_scan(scan_child, &q);
  return q.found;
}

void ot_begin_close(ot *t) {
  t->close_begun = true;
  ratchet_orch_close(t->o, closed_cb);
}

void ot_close(ot *t) {
  if (!t->close_begun)
    ot_begin_close(t);
  ot_run_until(t, ot_p_closed, 0);
  t->o = NULL;
  assert_int_equal(t->close_calls, 1);
  /* Every outcome came before close's callback, once, on the loop. */
  assert_int_equal(t->close_done_snapshot, t->n_done);
  assert_int_equal(t->dup_calls, 0);
  assert_int_equal(t->off_thread, 0);
  for (size_t id = 0; id < t->cap_res; id++) {
    if (t->res[id].submitted && t->res[id].calls != 1)
      print_error("task %zu: %u completion callbacks\n", id, t->res[id].calls);
    assert_true(!t->res[id].submitted || t->res[id].calls == 1);
  }
  /* A killed process still needs the scheduler to finish dying: allow it
   * that (a bound on a hang, not a timing threshold). */
  for (size_t i = 0; i < t->n_pids; i++) {
    for (int tries = 0; tries < 5000 && group_alive(t->pids[i]); tries++)
      usleep(1000);
    assert_false(group_alive(t->pids[i]));
  }
  assert_int_equal(count_children(t), 0);
  uv_close((uv_handle_t *)&t->watchdog, NULL);
  uv_close((uv_handle_t *)&t->sleeper, NULL);
  uv_run(&t->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&t->loop), 0);
  assert_int_equal(tu_count_fds(), t->fds_before);
  ratchet_worker_free(t->fork_worker);
  free(t->res);
  if (t->cap_ev != SIZE_MAX)
    free(t->ev);
  free(t->pids);
  free(t);
}
