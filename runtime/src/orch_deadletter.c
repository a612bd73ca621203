/*
 * orch_deadletter.c - the dead-letter file: one JSON object per final
 * failure, appended with a single write(2) to a file opened O_APPEND, so
 * that a crash at any moment leaves whole lines (but perhaps the last one
 * cut short) and concurrent writers never interleave within a line.
 *
 * JSON is built with jansson (never hand-escaped). A payload that is valid
 * UTF-8 is written as "payload"; any other as "payload_base64".
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "orch_internal.h"
#include "ratchet/alloc.h"

int ratchet__deadletter_open(ratchet_orch *o, const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    int err = errno;
    ratchet__orch_error(o, "dead_letter_path %s: %s", path, strerror(err));
    return -err;
  }
  o->dead_letter_path = ratchet__dup_str(path);
  if (o->dead_letter_path == NULL) {
    close(fd);
    return -ENOMEM;
  }
  o->dead_letter_fd = fd;
  return 0;
}

static char *base64(const unsigned char *p, size_t n) {
  static const char tab[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char *out = ratchet_malloc((n + 2) / 3 * 4 + 1), *q = out;
  if (out == NULL)
    return NULL;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *q++ = tab[v >> 18];
    *q++ = tab[(v >> 12) & 63];
    *q++ = tab[(v >> 6) & 63];
    *q++ = tab[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)p[i + 1] << 8;
    *q++ = tab[v >> 18];
    *q++ = tab[(v >> 12) & 63];
    *q++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
    *q++ = '=';
  }
  *q = '\0';
  return out;
}

static void set(json_t *obj, const char *key, json_t *v) {
  if (v != NULL)
    json_object_set_new(obj, key, v);
}

void ratchet__deadletter_write(ratchet_orch *o, const task *t,
                               const ratchet_orch_result *r) {
  json_t *obj = json_object();
  if (obj == NULL)
    return;
  set(obj, "time_ms", json_integer((json_int_t)ratchet__wall_ms()));
  set(obj, "id", json_integer((json_int_t)r->id));
  set(obj, "kind", json_string(r->kind));
  set(obj, "status", json_string(ratchet_status_name(r->status)));
  set(obj, "reason", json_string(r->error));
  set(obj, "attempts", json_integer(r->attempts));
  set(obj, "crashes", json_integer(r->crashes));
  set(obj, "exit_code", json_integer(r->exit_code));
  set(obj, "signal", json_integer(r->term_signal));
  if (r->related_id != 0)
    set(obj, "related_id", json_integer((json_int_t)r->related_id));
  json_t *pl = json_stringn((const char *)t->payload, t->payload_len);
  if (pl != NULL) {
    set(obj, "payload", pl);
  } else {
    char *b = base64(t->payload, t->payload_len);
    if (b != NULL) {
      set(obj, "payload_base64", json_string(b));
      ratchet_free(b);
    }
  }
  if (r->output_len > 0) {
    json_t *out = json_stringn(r->output, r->output_len);
    if (out != NULL)
      set(obj, "output", out);
  }
  char *line = json_dumps(obj, JSON_COMPACT);
  json_decref(obj);
  if (line == NULL)
    return;
  size_t n = strlen(line);
  line[n] = '\n'; /* json_dumps's NUL becomes the newline */
  ssize_t w;
  do
    w = write(o->dead_letter_fd, line, n + 1);
  while (w < 0 && errno == EINTR);
  free(line);
}
