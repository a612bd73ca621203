/*
 * test_events.c - the event bus and its JSON-lines sink (runtime/src/events.c,
 * events_jsonl.c).
 *
 * Subscribers record what they are given into a recorder; a buffered one can
 * be held inside its callback by a gate, which makes its ring fill and drop
 * deterministically: the tests count events, never time them (the only
 * clock is a watchdog that fails a wait which would otherwise hang). The
 * JSON lines are read back and parsed with jansson, which the runtime
 * library has already loaded: the test binary does not link it, so its few
 * functions are looked up by name.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratchet/alloc.h"
#include "ratchet/breaker.h"
#include "ratchet/clock.h"
#include "ratchet/events.h"
#include "testutil.h"

#define WATCHDOG_NS (60ull * 1000000000ull)

/* ---- Recorder ----------------------------------------------------------- */

typedef struct record {
  ratchet_event_type type;
  uint64_t seq, time_ns, wall_ms, task_id;
  char kind[128];
  char group[128];
  char message[4200];
} record;

typedef struct recorder {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  record *recs;
  size_t cap;
  size_t n;       /* events received (recs holds the first cap) */
  size_t entered; /* callbacks started */
  bool gate_closed;
  uint64_t sleep_ns; /* each callback sleeps this long */
  int tag;           /* written to order_log by inline callbacks */
} recorder;

static int order_log[64];
static size_t order_n;

static recorder *recorder_new(size_t cap) {
  recorder *r = calloc(1, sizeof *r);
  assert_non_null(r);
  assert_int_equal(pthread_mutex_init(&r->mu, NULL), 0);
  assert_int_equal(pthread_cond_init(&r->cv, NULL), 0);
  r->recs = calloc(cap, sizeof *r->recs);
  assert_non_null(r->recs);
  r->cap = cap;
  return r;
}

static void recorder_free(recorder *r) {
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  free(r->recs);
  free(r);
}

static void copy_str(char *dst, size_t room, const char *s) {
  assert_true(strlen(s) < room);
  strcpy(dst, s);
}

static void record_cb(void *ctx, const ratchet_event *ev) {
  recorder *r = ctx;
  pthread_mutex_lock(&r->mu);
  r->entered++;
  pthread_cond_broadcast(&r->cv);
  while (r->gate_closed)
    pthread_cond_wait(&r->cv, &r->mu);
  if (r->n < r->cap) {
    record *rec = &r->recs[r->n];
    rec->type = ev->type;
    rec->seq = ev->seq;
    rec->time_ns = ev->time_ns;
    rec->wall_ms = ev->wall_ms;
    rec->task_id = ev->task_id;
    copy_str(rec->kind, sizeof rec->kind, ev->kind);
    copy_str(rec->group, sizeof rec->group, ev->group);
    copy_str(rec->message, sizeof rec->message, ev->message);
  }
  r->n++;
  if (r->tag != 0 && order_n < TU_ARRAY_LEN(order_log))
    order_log[order_n++] = r->tag;
  pthread_mutex_unlock(&r->mu);
  if (r->sleep_ns != 0)
    ratchet_sleep_ns(r->sleep_ns);
}

static size_t recorder_count(recorder *r) {
  pthread_mutex_lock(&r->mu);
  size_t n = r->n;
  pthread_mutex_unlock(&r->mu);
  return n;
}

static void set_gate(recorder *r, bool closed) {
  pthread_mutex_lock(&r->mu);
  r->gate_closed = closed;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

/* Waits until n callbacks have started; fails after the watchdog. */
static void wait_entered(recorder *r, size_t n) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += (time_t)(WATCHDOG_NS / 1000000000ull);
  pthread_mutex_lock(&r->mu);
  int rc = 0;
  while (r->entered < n && rc == 0)
    rc = pthread_cond_timedwait(&r->cv, &r->mu, &until);
  size_t entered = r->entered;
  pthread_mutex_unlock(&r->mu);
  assert_true(entered >= n);
}

static ratchet_subscriber_options options(recorder *r, uint64_t types,
                                          uint32_t buffer) {
  ratchet_subscriber_options o = RATCHET_SUBSCRIBER_OPTIONS_INIT;
  o.types = types;
  o.buffer = buffer;
  o.cb = record_cb;
  o.ctx = r;
  return o;
}

static uint64_t publish(ratchet_events *bus, ratchet_event_type type,
                        const char *kind) {
  ratchet_event ev = RATCHET_EVENT_INIT;
  ev.type = type;
  ev.kind = kind;
  return ratchet_events_publish(bus, &ev);
}

/* ---- jansson --------------------------------------------------------- */

static void json_free(json_t *j) {
  json_decref(j);
}

static bool has(const json_t *o, const char *key) {
  return json_object_get(o, key) != NULL;
}

static json_int_t get_int(const json_t *o, const char *key) {
  const json_t *v = json_object_get(o, key);
  assert_non_null(v);
  assert_true(json_is_integer(v));
  return json_integer_value(v);
}

static double get_real(const json_t *o, const char *key) {
  const json_t *v = json_object_get(o, key);
  assert_non_null(v);
  assert_true(json_is_real(v));
  return json_real_value(v);
}

static const char *get_str(const json_t *o, const char *key) {
  const json_t *v = json_object_get(o, key);
  assert_non_null(v);
  assert_true(json_is_string(v));
  return json_string_value(v);
}

/* Splits a file's text into lines (in place); every line must end with a
 * newline. Returns the number of lines. */
static size_t split_lines(char *text, size_t len, char **lines, size_t max) {
  size_t n = 0;
  char *p = text, *end = text + len;
  while (p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    assert_non_null(nl);
    *nl = '\0';
    assert_true(n < max);
    lines[n++] = p;
    p = nl + 1;
  }
  return n;
}

static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  assert_non_null(buf);
  size_t got;
  while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
      assert_non_null(buf);
    }
  }
  fclose(f);
  buf[n] = '\0';
  *len = n;
  return buf;
}

static void make_tmpdir(char *buf, size_t size) {
  const char *t = getenv("TMPDIR");
  snprintf(buf, size, "%s/ratchet-events-XXXXXX",
           t != NULL && t[0] != '\0' ? t : "/tmp");
  assert_non_null(mkdtemp(buf));
}

/* ---- Names -------------------------------------------------------------- */

static void test_names_round_trip(void **state) {
  (void)state;
  for (int t = 0; t < RATCHET_EV_COUNT; t++) {
    const char *name = ratchet_event_type_name((ratchet_event_type)t);
    assert_string_not_equal(name, "unknown");
    ratchet_event_type back;
    assert_int_equal(ratchet_event_type_parse(name, &back), 0);
    assert_int_equal(back, t);
    for (int u = 0; u < t; u++)
      assert_string_not_equal(name,
                              ratchet_event_type_name((ratchet_event_type)u));
  }
  assert_string_equal(ratchet_event_type_name(RATCHET_EV_SUBMITTED),
                      "submitted");
  assert_string_equal(ratchet_event_type_name(RATCHET_EV_DEAD_LETTER),
                      "dead_letter");
  assert_string_equal(ratchet_event_type_name(RATCHET_EV_BREAKER), "breaker");
  assert_string_equal(ratchet_event_type_name((ratchet_event_type)24),
                      "unknown");
  assert_string_equal(ratchet_event_type_name((ratchet_event_type)-1),
                      "unknown");
  ratchet_event_type t = RATCHET_EV_FAILED;
  assert_int_equal(ratchet_event_type_parse("unknown", &t), -EINVAL);
  assert_int_equal(ratchet_event_type_parse("Submitted", &t), -EINVAL);
  assert_int_equal(ratchet_event_type_parse("", &t), -EINVAL);
  assert_int_equal(ratchet_event_type_parse(NULL, &t), -EINVAL);
  assert_int_equal(ratchet_event_type_parse("retry", NULL), -EINVAL);
  assert_int_equal(t, RATCHET_EV_FAILED);
}

/* ---- Arguments ---------------------------------------------------------- */

static void test_invalid_arguments(void **state) {
  (void)state;
  assert_int_equal(ratchet_events_new(NULL), -EINVAL);
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  recorder *r = recorder_new(4);
  ratchet_subscription *s = NULL;
  ratchet_subscriber_options o = options(r, RATCHET_EV_ALL, 0);

  assert_int_equal(ratchet_events_subscribe(NULL, &o, &s), -EINVAL);
  assert_int_equal(ratchet_events_subscribe(bus, NULL, &s), -EINVAL);
  assert_int_equal(ratchet_events_subscribe(bus, &o, NULL), -EINVAL);
  o.cb = NULL;
  assert_int_equal(ratchet_events_subscribe(bus, &o, &s), -EINVAL);
  o = options(r, RATCHET_EV_ALL, 1048577);
  assert_int_equal(ratchet_events_subscribe(bus, &o, &s), -EINVAL);
  o = options(r, RATCHET_EV_BIT(RATCHET_EV_COUNT), 0);
  assert_int_equal(ratchet_events_subscribe(bus, &o, &s), -EINVAL);
  o = options(r, RATCHET_EV_ALL | UINT64_C(1) << 63, 4);
  assert_int_equal(ratchet_events_subscribe(bus, &o, &s), -EINVAL);
  assert_null(s);
  for (int t = 0; t < RATCHET_EV_COUNT; t++)
    assert_false(ratchet_events_wanted(bus, (ratchet_event_type)t));

  assert_int_equal(ratchet_events_jsonl_open(NULL, "/dev/null", 0, 0, &s),
                   -EINVAL);
  assert_int_equal(ratchet_events_jsonl_open(bus, NULL, 0, 0, &s), -EINVAL);
  assert_int_equal(ratchet_events_jsonl_open(bus, "/dev/null", 0, 0, NULL),
                   -EINVAL);
  assert_int_equal(
      ratchet_events_jsonl_open(bus, "/dev/null", RATCHET_EV_BIT(30), 0, &s),
      -EINVAL);
  assert_int_equal(ratchet_events_jsonl_open(bus, "/dev/null", 0, 1048577, &s),
                   -EINVAL);
  assert_null(s);

  /* Publishing nothing, or an event of no known type, does nothing. */
  ratchet_event ev = RATCHET_EVENT_INIT;
  assert_int_equal(ratchet_events_publish(NULL, &ev), 0);
  assert_int_equal(ratchet_events_publish(bus, NULL), 0);
  ev.type = (ratchet_event_type)RATCHET_EV_COUNT;
  assert_int_equal(ratchet_events_publish(bus, &ev), 0);
  assert_int_equal(ev.seq, 0);
  assert_int_equal(publish(bus, RATCHET_EV_SUBMITTED, ""), 1);

  assert_false(ratchet_events_wanted(NULL, RATCHET_EV_SUBMITTED));
  assert_false(
      ratchet_events_wanted(bus, (ratchet_event_type)RATCHET_EV_COUNT));
  assert_int_equal(ratchet_events_dropped(NULL), 0);
  assert_int_equal(ratchet_events_delivered(NULL), 0);
  ratchet_events_unsubscribe(bus, NULL);
  ratchet_events_free(NULL);
  ratchet_events_free(bus);
  recorder_free(r);
}

/* ---- Inline delivery and filters ---------------------------------------- */

static void test_inline_order(void **state) {
  (void)state;
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  recorder *a = recorder_new(16), *b = recorder_new(16);
  a->tag = 1;
  b->tag = 2;
  order_n = 0;
  ratchet_subscription *sa, *sb;
  ratchet_subscriber_options o = options(a, 0, 0); /* 0: every type */
  assert_int_equal(ratchet_events_subscribe(bus, &o, &sa), 0);
  o = options(b, RATCHET_EV_ALL, 0);
  assert_int_equal(ratchet_events_subscribe(bus, &o, &sb), 0);

  uint64_t before = ratchet_now_ns();
  ratchet_event ev = RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_DISPATCHED;
  ev.task_id = 42;
  assert_int_equal(ratchet_events_publish(bus, &ev), 1);
  assert_int_equal(ev.seq, 1);
  assert_true(ev.time_ns >= before && ev.time_ns <= ratchet_now_ns());
  assert_true(ev.wall_ms > UINT64_C(1600000000000)); /* after 2020 */
  /* Times given by the publisher are kept. */
  ratchet_event ev2 = RATCHET_EVENT_INIT;
  ev2.type = RATCHET_EV_BREAKER;
  ev2.time_ns = 5;
  ev2.wall_ms = 7;
  assert_int_equal(ratchet_events_publish(bus, &ev2), 2);
  for (int i = 0; i < 5; i++)
    assert_int_equal(publish(bus, (ratchet_event_type)(i * 5), ""),
                     (uint64_t)i + 3);

  assert_int_equal(recorder_count(a), 7);
  assert_int_equal(recorder_count(b), 7);
  for (size_t i = 0; i < 7; i++) {
    assert_int_equal(a->recs[i].seq, i + 1);
    assert_int_equal(b->recs[i].seq, i + 1);
  }
  assert_int_equal(a->recs[0].task_id, 42);
  assert_int_equal(a->recs[1].time_ns, 5);
  assert_int_equal(a->recs[1].wall_ms, 7);
  assert_int_equal(a->recs[6].type, RATCHET_EV_WORKER_STARTING + 5);
  /* In the order they subscribed, for every event. */
  assert_int_equal(order_n, 14);
  for (size_t i = 0; i < order_n; i++)
    assert_int_equal(order_log[i], (int)(i % 2) + 1);
  assert_int_equal(ratchet_events_delivered(sa), 7);
  assert_int_equal(ratchet_events_dropped(sa), 0);

  ratchet_events_unsubscribe(bus, sa);
  assert_int_equal(publish(bus, RATCHET_EV_LOST, ""), 8);
  assert_int_equal(recorder_count(a), 7);
  assert_int_equal(recorder_count(b), 8);
  ratchet_events_free(bus);
  recorder_free(a);
  recorder_free(b);
}

static void test_type_mask(void **state) {
  (void)state;
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  recorder *r = recorder_new(64), *w = recorder_new(64);
  ratchet_subscription *s, *sw;
  ratchet_subscriber_options o = options(
      r, RATCHET_EV_BIT(RATCHET_EV_FAILED) | RATCHET_EV_BIT(RATCHET_EV_BREAKER),
      0);
  assert_int_equal(ratchet_events_subscribe(bus, &o, &s), 0);
  for (int t = 0; t < RATCHET_EV_COUNT; t++)
    assert_int_equal(ratchet_events_wanted(bus, (ratchet_event_type)t),
                     t == RATCHET_EV_FAILED || t == RATCHET_EV_BREAKER);
  o = options(w, RATCHET_EV_WORKER_ALL, 0);
  assert_int_equal(ratchet_events_subscribe(bus, &o, &sw), 0);
  assert_true(ratchet_events_wanted(bus, RATCHET_EV_WORKER_STDERR));
  assert_false(ratchet_events_wanted(bus, RATCHET_EV_SUBMITTED));

  for (int round = 0; round < 2; round++)
    for (int t = 0; t < RATCHET_EV_COUNT; t++)
      publish(bus, (ratchet_event_type)t, "");
  assert_int_equal(recorder_count(r), 4);
  assert_int_equal(r->recs[0].type, RATCHET_EV_FAILED);
  assert_int_equal(r->recs[0].seq, RATCHET_EV_FAILED + 1);
  assert_int_equal(r->recs[1].type, RATCHET_EV_BREAKER);
  assert_int_equal(r->recs[2].seq, RATCHET_EV_COUNT + RATCHET_EV_FAILED + 1);
  assert_int_equal(recorder_count(w), 16);
  for (size_t i = 0; i < 16; i++) {
    assert_true(w->recs[i].type >= RATCHET_EV_WORKER_STARTING);
    assert_true(w->recs[i].type <= RATCHET_EV_WORKER_STDERR);
  }

  ratchet_events_unsubscribe(bus, s);
  assert_false(ratchet_events_wanted(bus, RATCHET_EV_FAILED));
  assert_false(ratchet_events_wanted(bus, RATCHET_EV_BREAKER));
  assert_true(ratchet_events_wanted(bus, RATCHET_EV_WORKER_READY));
  ratchet_events_unsubscribe(bus, sw);
  assert_false(ratchet_events_wanted(bus, RATCHET_EV_WORKER_READY));
  ratchet_events_free(bus);
  recorder_free(r);
  recorder_free(w);
}

/* Task events of another kind are skipped; worker and breaker events pass;
 * for inline and buffered subscribers alike. */
static void test_kind_filter(void **state) {
  (void)state;
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  recorder *in = recorder_new(16), *buf = recorder_new(16);
  char long_kind[101];
  memset(long_kind, 'k', 100);
  long_kind[100] = '\0';
  ratchet_subscription *s1, *s2;
  ratchet_subscriber_options o = options(in, 0, 0);
  o.kind = "resize";
  assert_int_equal(ratchet_events_subscribe(bus, &o, &s1), 0);
  o = options(buf, 0, 8);
  o.kind = long_kind;
  assert_int_equal(ratchet_events_subscribe(bus, &o, &s2), 0);

  publish(bus, RATCHET_EV_SUBMITTED, "resize");    /* 1: in */
  publish(bus, RATCHET_EV_SUBMITTED, "other");     /* 2 */
  publish(bus, RATCHET_EV_TASK_LOG, "resize-big"); /* 3 */
  publish(bus, RATCHET_EV_FAILED, long_kind);      /* 4: buf */
  publish(bus, RATCHET_EV_WORKER_READY, "");       /* 5: both */
  publish(bus, RATCHET_EV_BREAKER, "");            /* 6: both */
  publish(bus, RATCHET_EV_POOL_FAILED, "resize");  /* 7: both */
  publish(bus, RATCHET_EV_TASK_LOG, "resize");     /* 8: in */
  ratchet_events_unsubscribe(bus, s2);

  static const uint64_t want_in[] = {1, 5, 6, 7, 8};
  static const uint64_t want_buf[] = {4, 5, 6, 7};
  assert_int_equal(recorder_count(in), TU_ARRAY_LEN(want_in));
  for (size_t i = 0; i < TU_ARRAY_LEN(want_in); i++)
    assert_int_equal(in->recs[i].seq, want_in[i]);
  assert_int_equal(recorder_count(buf), TU_ARRAY_LEN(want_buf));
  for (size_t i = 0; i < TU_ARRAY_LEN(want_buf); i++)
    assert_int_equal(buf->recs[i].seq, want_buf[i]);
  /* The subscriber compared the whole kind; the slot kept 63 bytes. */
  assert_int_equal(strlen(buf->recs[0].kind), 63);
  assert_int_equal(strlen(in->recs[0].kind), 6);
  ratchet_events_free(bus);
  recorder_free(in);
  recorder_free(buf);
}

/* ---- Buffered subscribers ----------------------------------------------- */

/* Waits until s has delivered or dropped n events. */
static void wait_accounted(const ratchet_subscription *s, uint64_t n) {
  uint64_t start = ratchet_now_ns();
  while (ratchet_events_delivered(s) + ratchet_events_dropped(s) < n &&
         ratchet_now_ns() - start < WATCHDOG_NS)
    ratchet_sleep_ns(1000000);
  assert_int_equal(ratchet_events_delivered(s) + ratchet_events_dropped(s), n);
}

/* With its callback held on the first event, a ring of 4 takes 3 more and
 * drops the rest; the publisher never waits (were it to, the gate would
 * never open and the test would hang); everything in the ring is then
 * delivered by unsubscribe. */
static void test_buffered_full_ring(void **state) {
  (void)state;
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  recorder *r = recorder_new(64);
  r->gate_closed = true;
  ratchet_subscription *s;
  ratchet_subscriber_options o = options(r, 0, 4);
  assert_int_equal(ratchet_events_subscribe(bus, &o, &s), 0);

  publish(bus, RATCHET_EV_SUBMITTED, "a");
  wait_entered(r, 1);
  for (int i = 0; i < 10; i++)
    publish(bus, RATCHET_EV_DISPATCHED, "a");
  assert_int_equal(ratchet_events_dropped(s), 7);
  assert_int_equal(ratchet_events_delivered(s), 0);
  assert_int_equal(recorder_count(r), 0);

  /* Once the ring is empty, it takes as many as it has slots again. */
  set_gate(r, false);
  wait_accounted(s, 11);
  for (int i = 0; i < 4; i++)
    publish(bus, RATCHET_EV_COMPLETED, "a");
  assert_int_equal(ratchet_events_dropped(s), 7);
  ratchet_events_unsubscribe(bus, s);

  static const uint64_t want[] = {1, 2, 3, 4, 12, 13, 14, 15};
  assert_int_equal(recorder_count(r), TU_ARRAY_LEN(want));
  for (size_t i = 0; i < TU_ARRAY_LEN(want); i++)
    assert_int_equal(r->recs[i].seq, want[i]);
  ratchet_events_free(bus);
  recorder_free(r);
}

/* A callback that sleeps, a small ring, many events: every event the
 * filter took is delivered or dropped, in order, and unsubscribe delivers
 * nothing more than what had been delivered once the ring was empty. */
static void test_buffered_slow(void **state) {
  (void)state;
  enum { N = 3000 };
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  recorder *r = recorder_new(N);
  r->sleep_ns = 200000;
  ratchet_subscription *s;
  ratchet_subscriber_options o = options(r, RATCHET_EV_TASK_ALL, 8);
  assert_int_equal(ratchet_events_subscribe(bus, &o, &s), 0);
  recorder *inl = recorder_new(N);
  ratchet_subscription *si;
  o = options(inl, RATCHET_EV_TASK_ALL, 0);
  assert_int_equal(ratchet_events_subscribe(bus, &o, &si), 0);

  uint64_t matched = 0;
  for (int i = 0; i < N; i++) {
    ratchet_event_type t = (ratchet_event_type)(i % RATCHET_EV_COUNT);
    matched += t <= RATCHET_EV_TASK_LOG;
    publish(bus, t, "k");
  }
  assert_int_equal(recorder_count(inl), matched); /* inline sees all */
  wait_accounted(s, matched);
  uint64_t delivered = ratchet_events_delivered(s);
  uint64_t dropped = ratchet_events_dropped(s);
  assert_int_equal(delivered + dropped, matched);
  ratchet_events_unsubscribe(bus, s);
  assert_int_equal(recorder_count(r), delivered);
  for (size_t i = 0; i < delivered; i++) {
    assert_true(r->recs[i].type <= RATCHET_EV_TASK_LOG);
    if (i > 0)
      assert_true(r->recs[i].seq > r->recs[i - 1].seq);
  }
  ratchet_events_free(bus);
  recorder_free(r);
  recorder_free(inl);
}

/* Freeing the bus unsubscribes everyone: buffered rings are delivered. */
static void test_free_delivers(void **state) {
  (void)state;
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  recorder *a = recorder_new(64), *b = recorder_new(64);
  a->sleep_ns = 100000;
  ratchet_subscription *sa, *sb;
  ratchet_subscriber_options o = options(a, 0, 64);
  assert_int_equal(ratchet_events_subscribe(bus, &o, &sa), 0);
  o = options(b, 0, 1);
  b->gate_closed = true;
  assert_int_equal(ratchet_events_subscribe(bus, &o, &sb), 0);
  publish(bus, RATCHET_EV_SUBMITTED, "");
  wait_entered(b, 1);
  for (int i = 0; i < 40; i++)
    publish(bus, RATCHET_EV_SUBMITTED, "");
  /* The one slot stays taken until its callback returns. */
  assert_int_equal(ratchet_events_dropped(sb), 40);
  set_gate(b, false);
  ratchet_events_free(bus);
  assert_int_equal(recorder_count(a), 41);
  assert_int_equal(a->recs[40].seq, 41);
  assert_int_equal(recorder_count(b), 1);
  recorder_free(a);
  recorder_free(b);
}

/* Strings that do not fit a slot are cut before the character that would
 * not fit whole; inline subscribers see them whole. */
static void test_utf8_cut(void **state) {
  (void)state;
  static const struct {
    const char *tail; /* after `prefix` bytes of 'a' */
    size_t prefix;
    size_t want; /* the length the slot keeps */
  } cases[] = {
      {"", 1023, 1023},                 /* fits exactly */
      {"", 1024, 1023},                 /* ASCII: cut anywhere */
      {"\xC3\xA9", 1022, 1022},         /* é across the cut */
      {"\xC3\xA9", 1021, 1023},         /* é just fits */
      {"\xE2\x82\xAC", 1021, 1021},     /* € across the cut */
      {"\xE2\x82\xAC", 1020, 1023},     /* € just fits */
      {"\xF0\x9F\x98\x80", 1020, 1020}, /* 😀 across the cut */
      {"\xF0\x9F\x98\x80xyz", 1019, 1023},
      {"\xF0\x9F\x98\x80", 1022, 1022}, /* 😀 starts at the last byte */
  };
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  recorder *r = recorder_new(64), *inl = recorder_new(64);
  ratchet_subscription *s, *si;
  ratchet_subscriber_options o = options(r, 0, 32);
  assert_int_equal(ratchet_events_subscribe(bus, &o, &s), 0);
  o = options(inl, 0, 0);
  assert_int_equal(ratchet_events_subscribe(bus, &o, &si), 0);

  char text[2100];
  for (size_t i = 0; i < TU_ARRAY_LEN(cases); i++) {
    memset(text, 'a', cases[i].prefix);
    strcpy(text + cases[i].prefix, cases[i].tail);
    ratchet_event ev = RATCHET_EVENT_INIT;
    ev.type = RATCHET_EV_WORKER_STDERR;
    ev.message = text;
    ratchet_events_publish(bus, &ev);
  }
  /* Two-byte characters only: the cut falls on an even length. */
  for (size_t i = 0; i < 1000; i++)
    memcpy(text + 2 * i, "\xC3\xA9", 2);
  text[2000] = '\0';
  ratchet_event ev = RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_FAILED;
  ev.message = text;
  /* kind: 62 + 2 bytes across 63; group: 64 ASCII bytes. */
  char kind[80], group[80];
  memset(kind, 'k', 62);
  strcpy(kind + 62, "\xC3\xA9");
  memset(group, 'g', 64);
  group[64] = '\0';
  ev.kind = kind;
  ev.group = group;
  ratchet_events_publish(bus, &ev);
  /* Not UTF-8 at all: stray continuation bytes are cut like any bytes. */
  char junk[1100];
  memset(junk, 0x80, 1099);
  junk[1099] = '\0';
  ratchet_event ev2 = RATCHET_EVENT_INIT;
  ev2.type = RATCHET_EV_WORKER_STDERR;
  ev2.message = junk;
  ev2.kind = NULL; /* taken as "" */
  ratchet_events_publish(bus, &ev2);
  ratchet_events_unsubscribe(bus, s);

  size_t n = TU_ARRAY_LEN(cases);
  assert_int_equal(recorder_count(r), n + 2);
  for (size_t i = 0; i < n; i++) {
    size_t full = cases[i].prefix + strlen(cases[i].tail);
    assert_int_equal(strlen(r->recs[i].message), cases[i].want);
    assert_int_equal(strlen(inl->recs[i].message), full);
    assert_memory_equal(r->recs[i].message, inl->recs[i].message,
                        cases[i].want);
  }
  assert_int_equal(strlen(r->recs[n].message), 1022);
  assert_memory_equal(r->recs[n].message, text, 1022);
  assert_int_equal(strlen(r->recs[n].kind), 62);
  assert_int_equal(strlen(r->recs[n].group), 63);
  assert_int_equal(strlen(inl->recs[n].message), 2000);
  assert_int_equal(strlen(inl->recs[n].kind), 64);
  assert_int_equal(strlen(r->recs[n + 1].message), 1023);
  assert_string_equal(r->recs[n + 1].kind, "");
  ratchet_events_free(bus);
  recorder_free(r);
  recorder_free(inl);
}

/* ---- Allocation --------------------------------------------------------- */

static void count_cb(void *ctx, const ratchet_event *ev) {
  (void)ev;
  atomic_fetch_add((_Atomic size_t *)ctx, 1);
}

/* Publishing allocates nothing, whatever the subscribers (a sink
 * included) and whatever the strings; freeing releases everything. */
static void test_publish_no_alloc(void **state) {
  (void)state;
  _Atomic size_t seen_inline = 0, seen_buffered = 0;
  tu_alloc_install(SIZE_MAX);
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  ratchet_subscription *s;
  ratchet_subscriber_options o = RATCHET_SUBSCRIBER_OPTIONS_INIT;
  o.cb = count_cb;
  o.ctx = &seen_inline;
  o.kind = "k";
  assert_int_equal(ratchet_events_subscribe(bus, &o, &s), 0);
  o.ctx = &seen_buffered;
  o.buffer = 16;
  assert_int_equal(ratchet_events_subscribe(bus, &o, &s), 0);
  assert_int_equal(ratchet_events_jsonl_open(bus, "/dev/null", 0, 8, &s), 0);

  char message[3000];
  memset(message, 'm', sizeof message - 1);
  message[sizeof message - 1] = '\0';
  size_t before = tu_alloc_count();
  for (int i = 0; i < 2000; i++) {
    ratchet_event ev = RATCHET_EVENT_INIT;
    ev.type = (ratchet_event_type)(i % RATCHET_EV_COUNT);
    ev.kind = i % 3 == 0 ? "k" : "other";
    ev.message = message;
    ev.group = "group";
    ratchet_events_publish(bus, &ev);
  }
  size_t after = tu_alloc_count();
  ratchet_events_free(bus);
  long live = tu_alloc_live();
  tu_alloc_uninstall();
  assert_int_equal(after, before);
  assert_int_equal(live, 0);
  assert_true(atomic_load(&seen_inline) > 0);
  assert_true(atomic_load(&seen_buffered) > 0);
}

static void test_new_out_of_memory(void **state) {
  (void)state;
  ratchet_events *bus = NULL;
  tu_alloc_install(0);
  int rc = ratchet_events_new(&bus);
  long live = tu_alloc_live();
  tu_alloc_uninstall();
  assert_int_equal(rc, -ENOMEM);
  assert_null(bus);
  assert_int_equal(live, 0);
}

/* Allocation failure at every point of subscribe: -ENOMEM, nothing left
 * allocated, nothing subscribed; until it succeeds without a failure. */
static void subscribe_out_of_memory(const char *kind, uint32_t buffer,
                                    size_t min_allocs) {
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  recorder *r = recorder_new(4);
  ratchet_subscriber_options o = options(r, 0, buffer);
  o.kind = kind;
  int rc = -ENOMEM;
  size_t k;
  for (k = 0; rc == -ENOMEM && k < 100; k++) {
    ratchet_subscription *s = NULL;
    tu_alloc_install(k);
    rc = ratchet_events_subscribe(bus, &o, &s);
    long live = tu_alloc_live();
    size_t tried = tu_alloc_count();
    if (rc == 0) {
      assert_true(tried <= k);
      assert_true(ratchet_events_wanted(bus, RATCHET_EV_BREAKER));
      publish(bus, RATCHET_EV_BREAKER, "");
      ratchet_events_unsubscribe(bus, s);
      live = tu_alloc_live();
      tu_alloc_uninstall();
      assert_int_equal(live, 0);
      assert_int_equal(recorder_count(r), 1);
      break;
    }
    tu_alloc_uninstall();
    assert_int_equal(rc, -ENOMEM);
    assert_null(s);
    assert_int_equal(live, 0);
    assert_false(ratchet_events_wanted(bus, RATCHET_EV_BREAKER));
  }
  assert_int_equal(rc, 0);
  assert_int_equal(k, min_allocs);
  ratchet_events_free(bus);
  recorder_free(r);
}

static void test_subscribe_out_of_memory(void **state) {
  (void)state;
  subscribe_out_of_memory(NULL, 0, 1);
  subscribe_out_of_memory("kind", 0, 2);
  subscribe_out_of_memory(NULL, 16, 2);
  subscribe_out_of_memory("kind", 16, 3);
}

/* The same for a JSON-lines sink, which also must leave no descriptor open
 * and create no file when it fails. */
static void test_jsonl_out_of_memory(void **state) {
  (void)state;
  char dir[512], path[600];
  make_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/events.jsonl", dir);
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  int fds = tu_count_fds();
  int rc = -ENOMEM;
  size_t k;
  for (k = 0; rc == -ENOMEM && k < 100; k++) {
    ratchet_subscription *s = NULL;
    tu_alloc_install(k);
    rc = ratchet_events_jsonl_open(bus, path, 0, 4, &s);
    long live = tu_alloc_live();
    size_t tried = tu_alloc_count();
    if (rc == 0) {
      assert_true(tried <= k);
      publish(bus, RATCHET_EV_SUBMITTED, "k");
      ratchet_events_unsubscribe(bus, s);
      live = tu_alloc_live();
      tu_alloc_uninstall();
      assert_int_equal(live, 0);
      break;
    }
    tu_alloc_uninstall();
    assert_int_equal(rc, -ENOMEM);
    assert_null(s);
    assert_int_equal(live, 0);
    assert_int_equal(tu_count_fds(), fds);
    struct stat st;
    assert_int_equal(stat(path, &st), -1);
    assert_false(ratchet_events_wanted(bus, RATCHET_EV_SUBMITTED));
  }
  assert_int_equal(rc, 0);
  assert_true(k >= 3);
  assert_int_equal(tu_count_fds(), fds);
  size_t len;
  char *text = read_file(path, &len);
  assert_non_null(strstr(text, "\"type\":\"submitted\""));
  free(text);
  ratchet_events_free(bus);
  unlink(path);
  rmdir(dir);
}

/* ---- JSON lines --------------------------------------------------------- */

static void test_jsonl_open_errors(void **state) {
  (void)state;
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  int fds = tu_count_fds();
  ratchet_subscription *s = NULL;
  assert_int_equal(
      ratchet_events_jsonl_open(bus, "/nonexistent-ratchet/x.jsonl", 0, 0, &s),
      -ENOENT);
  assert_int_equal(ratchet_events_jsonl_open(bus, "", 0, 0, &s), -ENOENT);
  assert_null(s);
  assert_false(ratchet_events_wanted(bus, RATCHET_EV_SUBMITTED));
  assert_int_equal(tu_count_fds(), fds);
  /* "-" is standard output, which unsubscribe leaves open. */
  assert_int_equal(
      ratchet_events_jsonl_open(bus, "-", RATCHET_EV_BIT(0), 0, &s), 0);
  assert_true(ratchet_events_wanted(bus, RATCHET_EV_SUBMITTED));
  assert_false(ratchet_events_wanted(bus, RATCHET_EV_DISPATCHED));
  ratchet_events_unsubscribe(bus, s);
  assert_true(fcntl(STDOUT_FILENO, F_GETFD) != -1);
  assert_int_equal(tu_count_fds(), fds);
  ratchet_events_free(bus);
}

static void test_jsonl_fields(void **state) {
  (void)state;
  char dir[512], path[600];
  make_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/events.jsonl", dir);
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  ratchet_subscription *s;
  assert_int_equal(ratchet_events_jsonl_open(bus, path, 0, 0, &s), 0);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  mode_t mask = umask(0);
  umask(mask);
  assert_int_equal(st.st_mode & 0777, 0644 & ~mask);

  static const char message[] =
      "line1\nline2 \"quoted\" back\\slash \ttab h\xC3\xA9llo \xE2\x9C\x93 "
      "\xF0\x9F\x98\x80 \x01";
  ratchet_event ev = RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_SUBMITTED;
  ev.task_id = 7;
  ev.kind = "say \"hi\"";
  ev.time_ns = 123;
  ev.wall_ms = 456;
  ratchet_events_publish(bus, &ev);

  ev = (ratchet_event)RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_DISPATCHED;
  ev.task_id = 7;
  ev.kind = "k";
  ev.attempt = 1;
  ev.pool = 0;
  ev.worker = 2;
  ev.pid = 1234;
  ratchet_events_publish(bus, &ev);

  ev = (ratchet_event)RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_FAILED;
  ev.task_id = 7;
  ev.status = RATCHET_STATUS_TIMEOUT;
  ev.duration_ns = 2500000;
  ev.message = message;
  ratchet_events_publish(bus, &ev);

  ev = (ratchet_event)RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_RETRY;
  ev.task_id = 7;
  ev.attempt = 2;
  ev.delay_ns = 1500000;
  ratchet_events_publish(bus, &ev);

  ev = (ratchet_event)RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_BREAKER;
  ev.group = "db";
  ev.from_state = RATCHET_BREAKER_CLOSED;
  ev.to_state = RATCHET_BREAKER_OPEN;
  ratchet_events_publish(bus, &ev);

  ev = (ratchet_event)RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_WORKER_EXITED;
  ev.pool = 0;
  ev.worker = 1;
  ev.pid = 99;
  ev.status = -1;
  ev.signal = 9;
  ratchet_events_publish(bus, &ev);

  ev = (ratchet_event)RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_WORKER_STDERR;
  ev.message = "bad\xFF byte \xED\xA0\x80 surrogate \xC3";
  ratchet_events_publish(bus, &ev);

  ev = (ratchet_event)RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_COMPLETED;
  ev.task_id = 7;
  ev.status = RATCHET_STATUS_OK;
  ratchet_events_publish(bus, &ev);

  ev = (ratchet_event)RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_TASK_LOG;
  ev.level = 2;
  ev.message = "log";
  ratchet_events_publish(bus, &ev);

  ev = (ratchet_event)RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_COALESCED;
  ev.task_id = 8;
  ev.related_id = 7;
  ratchet_events_publish(bus, &ev);

  ratchet_events_unsubscribe(bus, s);
  ratchet_events_free(bus);

  size_t len;
  char *text = read_file(path, &len);
  char *lines[16];
  size_t n = split_lines(text, len, lines, TU_ARRAY_LEN(lines));
  assert_int_equal(n, 10);
  json_t *j[10];
  for (size_t i = 0; i < n; i++) {
    json_error_t err;
    j[i] = json_loads(lines[i], 0, &err);
    if (j[i] == NULL)
      fail_msg("line %zu: %s: %s", i + 1, err.text, lines[i]);
    assert_true(json_is_object(j[i]));
    assert_int_equal(get_int(j[i], "seq"), (json_int_t)i + 1);
    assert_true(get_int(j[i], "time_ns") > 0);
    assert_true(get_int(j[i], "wall_ms") > 0);
  }

  assert_string_equal(get_str(j[0], "type"), "submitted");
  assert_int_equal(get_int(j[0], "time_ns"), 123);
  assert_int_equal(get_int(j[0], "wall_ms"), 456);
  assert_int_equal(get_int(j[0], "task_id"), 7);
  assert_string_equal(get_str(j[0], "kind"), "say \"hi\"");
  static const char *const absent[] = {
      "attempt", "pool",     "worker",      "pid",        "status",
      "signal",  "delay_ms", "duration_ms", "related_id", "level",
      "group",   "from",     "to",          "message"};
  for (size_t i = 0; i < TU_ARRAY_LEN(absent); i++)
    assert_false(has(j[0], absent[i]));

  assert_string_equal(get_str(j[1], "type"), "dispatched");
  assert_int_equal(get_int(j[1], "attempt"), 1);
  assert_int_equal(get_int(j[1], "pool"), 0);
  assert_int_equal(get_int(j[1], "worker"), 2);
  assert_int_equal(get_int(j[1], "pid"), 1234);

  assert_string_equal(get_str(j[2], "type"), "failed");
  assert_string_equal(get_str(j[2], "status"), "timeout");
  assert_true(get_real(j[2], "duration_ms") == 2.5);
  assert_string_equal(get_str(j[2], "message"), message);
  assert_false(has(j[2], "kind"));

  assert_string_equal(get_str(j[3], "type"), "retry");
  assert_true(get_real(j[3], "delay_ms") == 1.5);
  assert_int_equal(get_int(j[3], "attempt"), 2);

  assert_string_equal(get_str(j[4], "type"), "breaker");
  assert_string_equal(get_str(j[4], "group"), "db");
  assert_string_equal(get_str(j[4], "from"),
                      ratchet_breaker_state_name(RATCHET_BREAKER_CLOSED));
  assert_string_equal(get_str(j[4], "to"),
                      ratchet_breaker_state_name(RATCHET_BREAKER_OPEN));
  assert_false(has(j[4], "task_id"));

  assert_string_equal(get_str(j[5], "type"), "worker_exited");
  assert_int_equal(get_int(j[5], "status"), -1);
  assert_int_equal(get_int(j[5], "signal"), 9);
  assert_int_equal(get_int(j[5], "worker"), 1);
  assert_int_equal(get_int(j[5], "pid"), 99);

  assert_string_equal(get_str(j[6], "message"),
                      "bad\xEF\xBF\xBD byte \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF"
                      "\xBD surrogate \xEF\xBF\xBD");

  assert_string_equal(get_str(j[7], "type"), "completed");
  assert_string_equal(get_str(j[7], "status"), "ok");
  assert_true(get_real(j[7], "duration_ms") == 0.0);

  assert_string_equal(get_str(j[8], "type"), "task_log");
  assert_int_equal(get_int(j[8], "level"), 2);
  assert_string_equal(get_str(j[8], "message"), "log");

  assert_string_equal(get_str(j[9], "type"), "coalesced");
  assert_int_equal(get_int(j[9], "related_id"), 7);

  for (size_t i = 0; i < n; i++)
    json_free(j[i]);
  free(text);
  unlink(path);
  rmdir(dir);
}

typedef struct pipe_reader {
  int fd;
  char *buf;
  size_t len, cap;
} pipe_reader;

static void *read_pipe(void *arg) {
  pipe_reader *p = arg;
  for (;;) {
    if (p->cap - p->len < 65536) {
      p->cap = p->cap * 2 + 65536;
      p->buf = realloc(p->buf, p->cap + 1);
      if (p->buf == NULL)
        abort();
    }
    ssize_t got = read(p->fd, p->buf + p->len, p->cap - p->len);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break;
    p->len += (size_t)got;
  }
  p->buf[p->len] = '\0';
  return NULL;
}

/* A sink writing into a pipe nobody reads yet, with a ring of 2: it drops.
 * Then the pipe is read; with `after` (at most 2) more events published once
 * the sink has caught up, the drops are reported before the first of them, else
 * at the end. Every event is either a line or counted by a "dropped" line, and
 * each "dropped" line stands exactly where its events were lost. */
static void jsonl_drops(size_t after) {
  char dir[512], path[600];
  make_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/fifo", dir);
  assert_int_equal(mkfifo(path, 0600), 0);
  int rfd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  assert_true(rfd >= 0);
  ratchet_events *bus;
  assert_int_equal(ratchet_events_new(&bus), 0);
  ratchet_subscription *s;
  assert_int_equal(ratchet_events_jsonl_open(bus, path, 0, 2, &s), 0);
  assert_int_equal(fcntl(rfd, F_SETFL, 0), 0);
  int pipe_size = fcntl(rfd, F_GETPIPE_SZ);
  assert_true(pipe_size > 0);

  char message[1001];
  memset(message, 'x', 1000);
  message[1000] = '\0';
  ratchet_event ev = RATCHET_EVENT_INIT;
  ev.type = RATCHET_EV_WORKER_STDERR;
  ev.message = message;
  /* Lines of over 1000 bytes: the pipe and the ring take fewer than
   * `least` - 50, and once they are full every event is dropped. Go on
   * until the last one was, so that there are drops at the end. */
  size_t least = (size_t)pipe_size / 1000 + 64, burst = 0;
  uint64_t dropped = 0;
  bool last_dropped = false;
  while (burst < least || !last_dropped) {
    ratchet_events_publish(bus, &ev);
    burst++;
    uint64_t d = ratchet_events_dropped(s);
    last_dropped = d > dropped;
    dropped = d;
  }
  assert_true(dropped >= 50);

  pipe_reader reader = {.fd = rfd, .buf = NULL, .len = 0, .cap = 0};
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, read_pipe, &reader), 0);
  wait_accounted(s, burst);
  for (size_t i = 0; i < after; i++)
    ratchet_events_publish(bus, &ev);
  assert_int_equal(ratchet_events_dropped(s), dropped);
  ratchet_events_unsubscribe(bus, s); /* closes the write end */
  assert_int_equal(pthread_join(th, NULL), 0);
  close(rfd);
  ratchet_events_free(bus);

  size_t total = burst + after;
  char **lines = calloc(total * 2, sizeof *lines);
  assert_non_null(lines);
  size_t n = split_lines(reader.buf, reader.len, lines, total * 2);
  uint64_t next_seq = 1, pending = 0, events = 0, reported = 0, gaps = 0;
  for (size_t i = 0; i < n; i++) {
    json_error_t err;
    json_t *j = json_loads(lines[i], 0, &err);
    if (j == NULL)
      fail_msg("line %zu: %s", i + 1, err.text);
    const char *type = get_str(j, "type");
    if (strcmp(type, "dropped") == 0) {
      json_int_t count = get_int(j, "count");
      assert_true(count > 0);
      assert_int_equal(pending, 0); /* one line per gap */
      pending = (uint64_t)count;
      reported += pending;
      gaps++;
    } else {
      assert_string_equal(type, "worker_stderr");
      assert_string_equal(get_str(j, "message"), message);
      assert_int_equal(get_int(j, "seq"), (json_int_t)(next_seq + pending));
      next_seq += pending + 1;
      pending = 0;
      events++;
    }
    json_free(j);
  }
  assert_int_equal(next_seq + pending, total + 1);
  assert_int_equal(reported, dropped);
  assert_int_equal(events + reported, total);
  assert_true(gaps >= 1);
  /* The gap is reported before the events that came after it, or last. */
  const char *last = lines[n - 1];
  if (after > 0)
    assert_null(strstr(last, "\"dropped\""));
  else
    assert_non_null(strstr(last, "\"dropped\""));
  free(lines);
  free(reader.buf);
  unlink(path);
  rmdir(dir);
}

static void test_jsonl_dropped(void **state) {
  (void)state;
  jsonl_drops(2);
  jsonl_drops(0);
}

int test_events(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names_round_trip),
      cmocka_unit_test(test_invalid_arguments),
      cmocka_unit_test(test_inline_order),
      cmocka_unit_test(test_type_mask),
      cmocka_unit_test(test_kind_filter),
      cmocka_unit_test(test_buffered_full_ring),
      cmocka_unit_test(test_buffered_slow),
      cmocka_unit_test(test_free_delivers),
      cmocka_unit_test(test_utf8_cut),
      cmocka_unit_test(test_publish_no_alloc),
      cmocka_unit_test(test_new_out_of_memory),
      cmocka_unit_test(test_subscribe_out_of_memory),
      cmocka_unit_test(test_jsonl_out_of_memory),
      cmocka_unit_test(test_jsonl_open_errors),
      cmocka_unit_test(test_jsonl_fields),
      cmocka_unit_test(test_jsonl_dropped),
  };
  return cmocka_run_group_tests_name("events", tests, NULL, NULL);
}
