/*
 * events_jsonl.c - the JSON-lines event sink (ratchet_events_jsonl_open).
 *
 * The sink is a buffered subscription of the bus (events.c) whose callback
 * runs on the subscription's delivery thread: it builds a jansson object of
 * the event's fields that apply, serialises it with json_dumpb into a line
 * buffer that the sink owns (grown only if a line ever needs more), adds the
 * newline and hands the whole line to one write(2). Drops are learned
 * through the bus's private on_dropped hook, which runs just before the
 * first event that made it into the ring after them, so a "dropped" line
 * sits exactly where the events were lost. An event whose line cannot be
 * built (jansson out of memory) or written (a full disk) is counted into
 * the next "dropped" line that can be, so that the file still accounts for
 * every event the sink's filter took.
 *
 * The slots hand us strings of at most 1023 bytes, cut on a UTF-8 boundary,
 * but a worker's stderr line can hold any bytes, and jansson takes only
 * valid UTF-8: each string is first copied with every byte that does not
 * belong to a well-formed sequence replaced by U+FFFD.
 *
 * jansson allocates through its own allocator (process-wide, set with
 * json_set_alloc_funcs by the program if it wishes), not ratchet's; this
 * file allocates its own memory through ratchet's.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "events_internal.h"
#include "ratchet/alloc.h"
#include "ratchet/breaker.h"
#include "ratchet/events.h"
#include "ratchet/status.h"

#define DEFAULT_BUFFER 4096u
#define MAX_BUFFER     1048576u
/* Enough for any line: the message's 1023 bytes escaped as \u00XX are
 * 6138 bytes, kind and group 378 each, the numbers a few hundred. */
#define LINE_START 16384u
/* A slot's longest string (1023 bytes) with every byte replaced by
 * U+FFFD's three, and the NUL. */
#define TEXT_ROOM (3u * 1023u + 1u)

typedef struct sink {
  int fd;
  bool close_fd;
  uint64_t pending; /* dropped or unwritten events not yet reported */
  char *line;
  size_t line_size;
  char text[TEXT_ROOM];
} sink;

/* ---- Valid UTF-8 -------------------------------------------------------- */

/* The length of the well-formed UTF-8 sequence at s (n bytes left, n > 0),
 * or 0 if there is none there: no overlong forms, no surrogates, nothing
 * above U+10FFFF (RFC 3629, as jansson checks). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F;
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xC0) != 0x80)
      return 0;
  return len;
}

/* Copies s into k->text with each byte that starts no well-formed sequence
 * replaced by U+FFFD; returns the length. Stops early rather than overrun
 * the room (which the slots' limits make impossible). */
static size_t sanitize(sink *k, const char *s) {
  static const char replacement[] = "\xEF\xBF\xBD";
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s), out = 0;
  while (n > 0) {
    size_t len = utf8_seq(p, n);
    const void *from = p;
    size_t take = len;
    if (len == 0) {
      from = replacement;
      take = 3;
      len = 1;
    }
    if (out + take >= sizeof k->text)
      break;
    memcpy(k->text + out, from, take);
    out += take;
    p += len;
    n -= len;
  }
  k->text[out] = '\0';
  return out;
}

/* ---- Lines -------------------------------------------------------------- */

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t w = write(fd, buf, len);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    buf += w;
    len -= (size_t)w;
  }
  return 0;
}

/* Serialises o as one line and writes it with one write(2) (more only if
 * the kernel takes part of it). 0, or -ENOMEM or write's error (negated):
 * the line is then lost. */
static int write_line(sink *k, const json_t *o) {
  size_t n = json_dumpb(o, k->line, k->line_size - 1, JSON_COMPACT);
  if (n == 0)
    return -ENOMEM;
  if (n > k->line_size - 1) {
    char *bigger = ratchet_realloc(k->line, n + 1);
    if (bigger == NULL)
      return -ENOMEM;
    k->line = bigger;
    k->line_size = n + 1;
    if (json_dumpb(o, k->line, k->line_size - 1, JSON_COMPACT) != n)
      return -ENOMEM;
  }
  k->line[n] = '\n';
  return write_all(k->fd, k->line, n + 1);
}

/* Writes {"type":"dropped","count":N} for what is pending; keeps it pending
 * if the line cannot be built or written. */
static void flush_dropped(sink *k) {
  json_t *o = json_object();
  if (o == NULL)
    return;
  if (json_object_set_new(o, "type", json_string("dropped")) == 0 &&
      json_object_set_new(o, "count", json_integer((json_int_t)k->pending)) ==
          0 &&
      write_line(k, o) == 0)
    k->pending = 0;
  json_decref(o);
}

static void on_dropped(void *ctx, uint64_t n) {
  sink *k = ctx;
  k->pending += n;
  flush_dropped(k);
}

/* Sets a field; false (and o unchanged) if it could not be made. */
static bool set_int(json_t *o, const char *key, int64_t v) {
  return json_object_set_new(o, key, json_integer((json_int_t)v)) == 0;
}

static bool set_ms(json_t *o, const char *key, uint64_t ns) {
  return json_object_set_new(o, key, json_real((double)ns / 1e6)) == 0;
}

static bool set_str(json_t *o, const char *key, const char *s) {
  return json_object_set_new(o, key, json_string(s)) == 0;
}

static bool set_text(sink *k, json_t *o, const char *key, const char *s) {
  size_t n = sanitize(k, s);
  return json_object_set_new(o, key, json_stringn(k->text, n)) == 0;
}

static bool is_task(ratchet_event_type t) {
  return t <= RATCHET_EV_TASK_LOG;
}

/* The fields that apply: those the event's type defines (always, even when
 * 0), and any other that is not at its absent value. */
static bool build(sink *k, json_t *o, const ratchet_event *ev) {
  ratchet_event_type t = ev->type;
  bool ok = set_int(o, "seq", (int64_t)ev->seq) &&
            set_int(o, "time_ns", (int64_t)ev->time_ns) &&
            set_int(o, "wall_ms", (int64_t)ev->wall_ms) &&
            set_str(o, "type", ratchet_event_type_name(t));
  if (ok && ev->task_id != 0)
    ok = set_int(o, "task_id", (int64_t)ev->task_id);
  if (ok && ev->kind[0] != '\0')
    ok = set_text(k, o, "kind", ev->kind);
  if (ok && ev->attempt != 0)
    ok = set_int(o, "attempt", ev->attempt);
  if (ok && ev->pool >= 0)
    ok = set_int(o, "pool", ev->pool);
  if (ok && ev->worker >= 0)
    ok = set_int(o, "worker", ev->worker);
  if (ok && ev->pid != 0)
    ok = set_int(o, "pid", ev->pid);
  if (ok && is_task(t) && ev->status != 0)
    ok = set_str(o, "status", ratchet_status_name((ratchet_status)ev->status));
  else if (ok && !is_task(t) &&
           (t == RATCHET_EV_WORKER_EXITED || ev->status != 0))
    ok = set_int(o, "status", ev->status);
  if (ok && (t == RATCHET_EV_WORKER_EXITED || ev->signal != 0))
    ok = set_int(o, "signal", ev->signal);
  if (ok && (t == RATCHET_EV_RETRY || t == RATCHET_EV_DEFERRED ||
             t == RATCHET_EV_WORKER_RESTARTING || ev->delay_ns != 0))
    ok = set_ms(o, "delay_ms", ev->delay_ns);
  if (ok && (t == RATCHET_EV_SUCCEEDED || t == RATCHET_EV_FAILED ||
             t == RATCHET_EV_COMPLETED || ev->duration_ns != 0))
    ok = set_ms(o, "duration_ms", ev->duration_ns);
  if (ok && ev->related_id != 0)
    ok = set_int(o, "related_id", (int64_t)ev->related_id);
  if (ok && (t == RATCHET_EV_TASK_LOG || ev->level != 0))
    ok = set_int(o, "level", ev->level);
  if (ok && ev->group[0] != '\0')
    ok = set_text(k, o, "group", ev->group);
  if (ok && t == RATCHET_EV_BREAKER)
    ok = set_str(o, "from",
                 ratchet_breaker_state_name(
                     (ratchet_breaker_state)ev->from_state)) &&
         set_str(
             o, "to",
             ratchet_breaker_state_name((ratchet_breaker_state)ev->to_state));
  if (ok && ev->message[0] != '\0')
    ok = set_text(k, o, "message", ev->message);
  return ok;
}

static void on_event(void *ctx, const ratchet_event *ev) {
  sink *k = ctx;
  if (k->pending > 0)
    flush_dropped(k);
  json_t *o = json_object();
  if (o == NULL || !build(k, o, ev) || write_line(k, o) != 0)
    k->pending++;
  json_decref(o);
}

static void on_close(void *ctx) {
  sink *k = ctx;
  if (k->pending > 0)
    flush_dropped(k);
  if (k->close_fd)
    close(k->fd);
  ratchet_free(k->line);
  ratchet_free(k);
}

/* ---- Open --------------------------------------------------------------- */

/* The subscription comes first and the file last, so that a failure to
 * allocate creates no file; the delivery thread cannot touch k->fd before
 * this returns, because nothing can be published until then. */
int ratchet_events_jsonl_open(ratchet_events *bus, const char *path,
                              uint64_t types, uint32_t buffer,
                              ratchet_subscription **out) {
  if (bus == NULL || path == NULL || out == NULL || buffer > MAX_BUFFER ||
      (types & ~RATCHET_EV_ALL) != 0)
    return -EINVAL;
  sink *k = ratchet_malloc(sizeof *k);
  if (k == NULL)
    return -ENOMEM;
  k->fd = -1;
  k->close_fd = false;
  k->pending = 0;
  k->line_size = LINE_START;
  k->line = ratchet_malloc(k->line_size);
  if (k->line == NULL) {
    ratchet_free(k);
    return -ENOMEM;
  }

  ratchet_subscriber_options o = RATCHET_SUBSCRIBER_OPTIONS_INIT;
  o.types = types;
  o.buffer = buffer != 0 ? buffer : DEFAULT_BUFFER;
  o.cb = on_event;
  o.ctx = k;
  ratchet_subscription *s;
  int rc = ratchet__events_subscribe_hooks(bus, &o, on_dropped, on_close, &s);
  if (rc != 0) {
    ratchet_free(k->line);
    ratchet_free(k);
    return rc;
  }

  if (strcmp(path, "-") == 0) {
    k->fd = STDOUT_FILENO;
  } else {
    k->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (k->fd < 0) {
      rc = -errno;
      ratchet_events_unsubscribe(bus, s); /* frees k */
      return rc;
    }
    k->close_fd = true;
  }
  *out = s;
  return 0;
}
