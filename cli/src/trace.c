/*
 * trace.c - writes the record of a run as Chrome trace-event JSON
 * (trace.h).
 *
 * The trace is streamed: each event is one jansson object, serialised
 * with json_dumpf straight into the file and freed, so that 50,000 slices
 * never sit in memory as a JSON tree. Only the punctuation between events
 * (the array's brackets and commas) is written by hand; every value and
 * every key goes through jansson, which also refuses strings that are not
 * UTF-8 (names and messages were cut on character boundaries by the
 * record, and are checked again here: a string jansson refuses becomes
 * "?"). Times are microseconds with three decimals (JSON_REAL_PRECISION
 * 15 keeps nanoseconds for runs up to about eleven days).
 */
#include "trace.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "ratchet/alloc.h"
#include "ratchet/breaker.h"
#include "ratchet/status.h"

#define DUMP_FLAGS                                                             \
  (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

typedef struct writer {
  FILE *f;
  bool first;
  bool failed; /* out of memory building an event */
} writer;

static json_t *str(const char *s) {
  json_t *j = json_string(s);
  return j != NULL ? j : json_string("?");
}

static json_t *usec(uint64_t ns) {
  return json_real((double)ns / 1000.0);
}

/* Writes ev (taken over) as the next element of traceEvents. */
static void put(writer *w, json_t *ev) {
  if (ev == NULL) {
    w->failed = true;
    return;
  }
  if (!w->first)
    fputs(",\n", w->f);
  w->first = false;
  if (json_dumpf(ev, w->f, DUMP_FLAGS) != 0)
    w->failed = true;
  json_decref(ev);
}

static void put_meta(writer *w, const char *name, int32_t pid, int32_t tid,
                     json_t *args) {
  json_t *ev = json_object();
  if (ev == NULL) {
    json_decref(args);
    w->failed = true;
    return;
  }
  json_object_set_new(ev, "name", str(name));
  json_object_set_new(ev, "ph", str("M"));
  json_object_set_new(ev, "pid", json_integer(pid));
  if (tid >= 0)
    json_object_set_new(ev, "tid", json_integer(tid));
  json_object_set_new(ev, "args", args);
  put(w, ev);
}

static void put_tracks(writer *w, const cli_rec_view *v) {
  char name[48];
  for (int32_t p = 0; p < v->n_pools; p++) {
    snprintf(name, sizeof name, "pool %d", (int)p);
    put_meta(w, "process_name", p, -1, json_pack("{s:s}", "name", name));
    put_meta(w, "process_sort_index", p, -1,
             json_pack("{s:i}", "sort_index", (int)p));
    for (int32_t t = 0; t < v->workers_per_pool[p]; t++) {
      snprintf(name, sizeof name, "worker %d", (int)t);
      put_meta(w, "thread_name", p, t, json_pack("{s:s}", "name", name));
      put_meta(w, "thread_sort_index", p, t,
               json_pack("{s:i}", "sort_index", (int)t));
    }
  }
}

/* chrome://tracing's reserved colour names; Perfetto ignores them. */
static const char *cname(int status) {
  switch (status) {
  case RATCHET_STATUS_OK:
    return "good";
  case RATCHET_STATUS_FAILED:
    return "bad";
  case RATCHET_STATUS_TIMEOUT:
    return "terrible";
  case RATCHET_STATUS_LOST:
    return "black";
  default:
    return "grey";
  }
}

/* A new event and its args: both, or neither and the writer failed. */
static bool new_event(writer *w, json_t **ev, json_t **args) {
  *ev = json_object();
  *args = json_object();
  if (*ev != NULL && *args != NULL)
    return true;
  json_decref(*ev);
  json_decref(*args);
  w->failed = true;
  return false;
}

/* The task an event concerns, each number left out when 0 (unknown). */
static void put_task_args(json_t *args, uint64_t seq, uint64_t task_id,
                          uint32_t attempt) {
  if (seq != 0)
    json_object_set_new(args, "task", json_integer((json_int_t)seq));
  if (task_id != 0)
    json_object_set_new(args, "task_id", json_integer((json_int_t)task_id));
  if (attempt != 0)
    json_object_set_new(args, "attempt", json_integer(attempt));
}

static void put_slice(writer *w, const cli_rec_slice *s) {
  json_t *args, *ev;
  if (!new_event(w, &ev, &args))
    return;
  put_task_args(args, s->seq, s->task_id, s->attempt);
  json_object_set_new(args, "status",
                      str(ratchet_status_name((ratchet_status)s->status)));
  if (s->has_exit) {
    json_object_set_new(args, "exit", json_integer(s->exit_code));
    if (s->term_signal != 0)
      json_object_set_new(args, "signal", json_integer(s->term_signal));
  }
  if (s->error[0] != '\0')
    json_object_set_new(args, "error", str(s->error));
  json_object_set_new(args, "final", json_boolean(s->final));

  json_object_set_new(ev, "name", str(s->name));
  json_object_set_new(ev, "cat", str("attempt"));
  json_object_set_new(ev, "ph", str("X"));
  json_object_set_new(ev, "ts", usec(s->start_ns));
  json_object_set_new(ev, "dur", usec(s->dur_ns));
  json_object_set_new(ev, "pid", json_integer(s->pool < 0 ? 0 : s->pool));
  json_object_set_new(ev, "tid", json_integer(s->worker < 0 ? 0 : s->worker));
  json_object_set_new(ev, "cname", str(cname(s->status)));
  json_object_set_new(ev, "args", args);
  put(w, ev);
}

static void put_instant(writer *w, const cli_rec_instant *in) {
  char name[96];
  const char *scope = in->worker >= 0 ? "t" : "p";
  json_t *args, *ev;
  if (!new_event(w, &ev, &args))
    return;
  put_task_args(args, in->seq, in->task_id, in->attempt);
  switch (in->type) {
  case RATCHET_EV_RETRY:
    snprintf(name, sizeof name, "retry");
    json_object_set_new(args, "status",
                        str(ratchet_status_name((ratchet_status)in->status)));
    json_object_set_new(args, "delay_ms", usec(in->delay_ns / 1000u));
    break;
  case RATCHET_EV_LOST:
    snprintf(name, sizeof name, "lost");
    break;
  case RATCHET_EV_WORKER_EXITED:
    snprintf(name, sizeof name, "worker exited");
    if (in->term_signal != 0)
      json_object_set_new(args, "signal", json_integer(in->term_signal));
    else
      json_object_set_new(args, "exit", json_integer(in->status));
    break;
  case RATCHET_EV_WORKER_RESTARTING:
    snprintf(name, sizeof name, "worker restarting");
    json_object_set_new(args, "delay_ms", usec(in->delay_ns / 1000u));
    break;
  case RATCHET_EV_WORKER_RECYCLED:
    snprintf(name, sizeof name, "worker recycled");
    break;
  case RATCHET_EV_WORKER_HUNG:
    snprintf(name, sizeof name, "worker hung");
    break;
  case RATCHET_EV_POOL_FAILED:
    snprintf(name, sizeof name, "pool failed");
    scope = "p";
    break;
  case RATCHET_EV_BREAKER:
    snprintf(name, sizeof name, "breaker %s: %s -> %s", in->group,
             ratchet_breaker_state_name((ratchet_breaker_state)in->from_state),
             ratchet_breaker_state_name((ratchet_breaker_state)in->to_state));
    json_object_set_new(args, "group", str(in->group));
    json_object_set_new(
        args, "from",
        str(ratchet_breaker_state_name((ratchet_breaker_state)in->from_state)));
    json_object_set_new(
        args, "to",
        str(ratchet_breaker_state_name((ratchet_breaker_state)in->to_state)));
    scope = "g";
    break;
  default:
    snprintf(name, sizeof name, "%s", ratchet_event_type_name(in->type));
    break;
  }
  if (in->message[0] != '\0')
    json_object_set_new(args, "message", str(in->message));
  json_object_set_new(ev, "name", str(name));
  json_object_set_new(ev, "cat", str("event"));
  json_object_set_new(ev, "ph", str("i"));
  json_object_set_new(ev, "s", str(scope));
  json_object_set_new(ev, "ts", usec(in->ts_ns));
  json_object_set_new(ev, "pid", json_integer(in->pool < 0 ? 0 : in->pool));
  json_object_set_new(ev, "tid", json_integer(in->worker < 0 ? 0 : in->worker));
  json_object_set_new(ev, "args", args);
  put(w, ev);
}

static json_t *other_data(const cli_rec_view *v) {
  return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "ratchet", RATCHET_CLI_VERSION,
                   "start_unix_ms", (json_int_t)v->start_wall_ms, "slices",
                   (json_int_t)v->n_slices, "slices_dropped",
                   (json_int_t)v->slices_dropped, "instants",
                   (json_int_t)v->n_instants, "instants_dropped",
                   (json_int_t)v->instants_dropped);
}

int cli_trace_write(const cli_rec *r, const char *path, cli_err *e) {
  cli_rec_view v;
  cli_rec_view_get(r, &v);
  size_t plen = strlen(path);
  char *tmp = ratchet_malloc(plen + 5);
  if (tmp == NULL) {
    cli_err_set(e, "--trace: out of memory");
    return -ENOMEM;
  }
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  writer w = {.f = fopen(tmp, "w"), .first = true, .failed = false};
  if (w.f == NULL) {
    int err = errno;
    cli_err_set(e, "--trace: cannot write '%s': %s", tmp, strerror(err));
    ratchet_free(tmp);
    return -err;
  }
  fputs("{\"traceEvents\":[\n", w.f);
  put_tracks(&w, &v);
  for (size_t i = 0; i < v.n_slices; i++)
    put_slice(&w, &v.slices[i]);
  for (size_t i = 0; i < v.n_instants; i++)
    put_instant(&w, &v.instants[i]);
  fputs("\n],\"displayTimeUnit\":\"ms\",\"otherData\":", w.f);
  json_t *od = other_data(&v);
  if (od == NULL || json_dumpf(od, w.f, DUMP_FLAGS) != 0)
    w.failed = true;
  json_decref(od);
  fputs("}\n", w.f);
  int err = ferror(w.f) ? (errno != 0 ? errno : EIO) : 0;
  if (fclose(w.f) != 0 && err == 0)
    err = errno != 0 ? errno : EIO;
  if (err == 0 && w.failed)
    err = ENOMEM;
  if (err == 0 && rename(tmp, path) != 0)
    err = errno;
  if (err != 0) {
    cli_err_set(e, "--trace: cannot write '%s': %s", path, strerror(err));
    (void)remove(tmp);
  }
  ratchet_free(tmp);
  return -err;
}
