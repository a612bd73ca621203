/*
 * diag.c - formatting of the command line's error messages. Bad values are
 * echoed back to the user, so they are escaped and cut to a readable length
 * first: a value may hold a newline, a terminal escape or a megabyte.
 */
#include "diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void cli_err_set(cli_err *e, const char *fmt, ...) {
  if (e == NULL)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
}

void cli_err_prefix(cli_err *e, const char *fmt, ...) {
  if (e == NULL)
    return;
  char head[CLI_SHOW_PATH_SIZE + 64];
  char old[sizeof e->msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(head, sizeof head, fmt, ap);
  va_end(ap);
  memcpy(old, e->msg, sizeof old);
  /* Truncation is acceptable: the message is cut, never overrun. */
  size_t n = strlen(head);
  if (n > sizeof e->msg - 3)
    n = sizeof e->msg - 3;
  memcpy(e->msg, head, n);
  memcpy(e->msg + n, ": ", 2);
  size_t rest = sizeof e->msg - n - 3;
  size_t ol = strlen(old);
  if (ol > rest)
    ol = rest;
  memcpy(e->msg + n + 2, old, ol);
  e->msg[n + 2 + ol] = '\0';
}

/* Appends s[0..n) escaped at buf + o; returns the new offset. */
static size_t show_bytes(const char *s, size_t n, char *buf, size_t o) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\n' || c == '\t' || c == '\r' || c == '\'' || c == '\\') {
      buf[o++] = '\\';
      buf[o++] = c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r' : (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      buf[o++] = '\\';
      buf[o++] = 'x';
      buf[o++] = hex[c >> 4];
      buf[o++] = hex[c & 15];
    } else {
      buf[o++] = (char)c;
    }
  }
  return o;
}

const char *cli_show(const char *s, char *buf) {
  const size_t shown_max = 64;
  if (s == NULL)
    s = "";
  size_t n = strnlen(s, shown_max + 1);
  size_t o = show_bytes(s, n > shown_max ? shown_max : n, buf, 0);
  if (n > shown_max) {
    memcpy(buf + o, "...", 3);
    o += 3;
  }
  buf[o] = '\0';
  return buf;
}

const char *cli_show_path(const char *path, char *buf) {
  if (path == NULL)
    path = "";
  size_t n = strlen(path), o;
  if (n <= CLI_SHOW_PATH_MAX) {
    o = show_bytes(path, n, buf, 0);
  } else {
    /* Cut between characters, not inside a UTF-8 sequence. */
    size_t head = CLI_SHOW_PATH_MAX / 3;
    size_t tail = CLI_SHOW_PATH_MAX - head;
    /* At most 3 bytes back: a path that is not UTF-8 is cut anyway. */
    for (int k = 0; k < 3 && ((unsigned char)path[head] & 0xc0) == 0x80; k++)
      head--;
    for (int k = 0; k < 3 && ((unsigned char)path[n - tail] & 0xc0) == 0x80;
         k++)
      tail--;
    o = show_bytes(path, head, buf, 0);
    memcpy(buf + o, "...", 3);
    o = show_bytes(path + n - tail, tail, buf, o + 3);
  }
  buf[o] = '\0';
  return buf;
}
