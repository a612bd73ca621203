/*
 * log.c - the command line's log lines (log.h).
 *
 * A message is formatted into a fixed buffer, then made safe for its
 * format: in text, control characters become \xNN (a worker's stderr may
 * hold terminal escapes); in JSON, bytes that do not form UTF-8 become
 * U+FFFD, because jansson refuses strings that are not valid UTF-8 and a
 * line must always parse. JSON objects are built and serialised by
 * jansson (compact, keys in insertion order); nothing is escaped by hand.
 * The finished line goes out with one write(2), retried only for EINTR
 * and short writes, so that concurrent writers to the same stderr (the
 * task output, which run_output.c writes whole from the same thread) never
 * split it.
 */
#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ratchet/alloc.h"

#define MSG_MAX 8192

static const char *const level_names[] = {"debug", "info", "warn", "error"};
/* How the text format spells them, and their colours (SGR). */
static const char *const level_words[] = {"debug", "info", "warning", "error"};
static const char *const level_colors[] = {"2", "36", "33", "1;31"};

void cli_log_init(cli_log *l, const char *prog, cli_log_level min,
                  cli_log_format format, int fd) {
  memset(l, 0, sizeof *l);
  l->prog = prog;
  l->min = min;
  l->format = format;
  l->fd = fd;
  const char *term = getenv("TERM");
  const char *no_color = getenv("NO_COLOR");
  l->color = format == CLI_LOG_TEXT && isatty(fd) &&
             (no_color == NULL || no_color[0] == '\0') &&
             (term == NULL || strcmp(term, "dumb") != 0);
}

bool cli_log_on(const cli_log *l, cli_log_level level) {
  return l != NULL && level >= l->min && level <= CLI_LOG_ERROR;
}

const char *cli_log_level_name(cli_log_level level) {
  return (unsigned)level <= CLI_LOG_ERROR ? level_names[level] : "unknown";
}

int cli_log_level_parse(const char *flag, const char *v, cli_log_level *out,
                        cli_err *e) {
  char show[CLI_SHOW_SIZE];
  for (unsigned i = 0; i <= CLI_LOG_ERROR; i++)
    if (v != NULL && strcmp(v, level_names[i]) == 0) {
      *out = (cli_log_level)i;
      return 0;
    }
  if (v != NULL && strcmp(v, "warning") == 0) {
    *out = CLI_LOG_WARN;
    return 0;
  }
  cli_err_set(e, "%s: invalid level '%s' (expected debug, info, warn or error)",
              flag, cli_show(v, show));
  return -EINVAL;
}

int cli_log_format_parse(const char *flag, const char *v, cli_log_format *out,
                         cli_err *e) {
  char show[CLI_SHOW_SIZE];
  if (v != NULL && strcmp(v, "text") == 0) {
    *out = CLI_LOG_TEXT;
    return 0;
  }
  if (v != NULL && strcmp(v, "json") == 0) {
    *out = CLI_LOG_JSON;
    return 0;
  }
  cli_err_set(e, "%s: invalid format '%s' (expected text or json)", flag,
              cli_show(v, show));
  return -EINVAL;
}

static void write_line(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    p += w;
    n -= (size_t)w;
  }
}

/* The length of the UTF-8 character at s[0..n), or 0 if it is not one
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_char(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1fu;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3;
    cp = c & 0x0fu;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07u;
  } else {
    return 0;
  }
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    cp = (cp << 6) | (s[i] & 0x3fu);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
    return 0;
  return len;
}

/* Copies s into out (room for 3 * strlen(s) + 1) as valid UTF-8. */
static size_t utf8_clean(const char *s, char *out) {
  const unsigned char *p = (const unsigned char *)s;
  size_t n = strlen(s), i = 0, o = 0;
  while (i < n) {
    size_t k = utf8_char(p + i, n - i);
    if (k == 0) {
      memcpy(out + o, "\xef\xbf\xbd", 3);
      o += 3;
      i++;
    } else {
      memcpy(out + o, p + i, k);
      o += k;
      i += k;
    }
  }
  out[o] = '\0';
  return o;
}

/* Copies s into out (room for 4 * strlen(s) + 1) with control characters
 * other than TAB shown as \xNN. */
static size_t text_clean(const char *s, char *out) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 15];
    } else {
      out[o++] = (char)*p;
    }
  }
  out[o] = '\0';
  return o;
}

static void iso_time(char *buf, size_t n) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  /* strftime for the date and time (no truncation warnings on unbounded
   * ints), then the milliseconds. */
  size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
  if (k > 0 && k < n)
    snprintf(buf + k, n - k, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

static void emit_json(cli_log *l, cli_log_level level, const cli_log_fields *f,
                      const char *msg) {
  char when[40];
  iso_time(when, sizeof when);
  char *clean = ratchet_malloc(strlen(msg) * 3 + 1);
  json_t *o = json_object();
  if (clean == NULL || o == NULL)
    goto done;
  size_t n = utf8_clean(msg, clean);
  json_object_set_new(o, "time", json_string(when));
  json_object_set_new(o, "level", json_string(level_names[level]));
  json_object_set_new(o, "msg", json_stringn(clean, n));
  if (f != NULL) {
    if (f->event != NULL)
      json_object_set_new(o, "event", json_string(f->event));
    if (f->task != 0)
      json_object_set_new(o, "task", json_integer((json_int_t)f->task));
    if (f->attempt != 0)
      json_object_set_new(o, "attempt", json_integer((json_int_t)f->attempt));
    if (f->worker >= 0)
      json_object_set_new(o, "worker", json_integer(f->worker));
    if (f->kind != NULL && f->kind[0] != '\0') {
      char k[256];
      char kc[sizeof k * 3];
      snprintf(k, sizeof k, "%s", f->kind);
      json_object_set_new(o, "kind", json_string(utf8_clean(k, kc) ? kc : ""));
    }
  }
  /* Sized first, so that the line is ours (ratchet's allocator), with
   * room for the newline. */
  size_t len = json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
  char *line = len > 0 ? ratchet_malloc(len + 1) : NULL;
  if (line != NULL &&
      json_dumpb(o, line, len, JSON_COMPACT | JSON_PRESERVE_ORDER) == len) {
    line[len] = '\n';
    if (l->before != NULL)
      l->before(l->before_ctx);
    write_line(l->fd, line, len + 1);
  }
  ratchet_free(line);
done:
  json_decref(o);
  ratchet_free(clean);
}

static void emit_text(cli_log *l, cli_log_level level, const char *msg) {
  char *clean = ratchet_malloc(strlen(msg) * 4 + 1);
  if (clean == NULL)
    return;
  size_t n = text_clean(msg, clean);
  size_t room = n + strlen(l->prog) + 64;
  char *line = ratchet_malloc(room);
  if (line != NULL) {
    int len;
    if (l->color)
      len = snprintf(line, room, "%s: \033[%sm%s\033[0m: %s\n", l->prog,
                     level_colors[level], level_words[level], clean);
    else
      len = snprintf(line, room, "%s: %s: %s\n", l->prog, level_words[level],
                     clean);
    if (len > 0) {
      if (l->before != NULL)
        l->before(l->before_ctx);
      write_line(l->fd, line, (size_t)len < room ? (size_t)len : room - 1);
    }
    ratchet_free(line);
  }
  ratchet_free(clean);
}

void cli_log_msg(cli_log *l, cli_log_level level, const cli_log_fields *f,
                 const char *fmt, ...) {
  if (!cli_log_on(l, level))
    return;
  char msg[MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (l->format == CLI_LOG_JSON)
    emit_json(l, level, f, msg);
  else
    emit_text(l, level, msg);
}
