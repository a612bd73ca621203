/*
 * sbuf.c - the growable string of sbuf.h: doubling growth, a NUL kept after
 * the bytes so the contents are always a C string.
 */
#include "sbuf.h"

#include <errno.h>
#include <string.h>

#include "ratchet/alloc.h"

int cli_sbuf_add(cli_sbuf *b, const void *p, size_t len) {
  if (len > (size_t)-1 / 2 - b->len)
    return -ENOMEM;
  if (b->len + len + 1 > b->cap) {
    size_t cap = b->cap < 64 ? 64 : b->cap;
    while (cap < b->len + len + 1)
      cap *= 2;
    char *d = ratchet_realloc(b->data, cap);
    if (d == NULL)
      return -ENOMEM;
    b->data = d;
    b->cap = cap;
  }
  if (len > 0)
    memcpy(b->data + b->len, p, len);
  b->len += len;
  b->data[b->len] = '\0';
  return 0;
}

int cli_sbuf_adds(cli_sbuf *b, const char *s) {
  return cli_sbuf_add(b, s, strlen(s));
}

int cli_sbuf_addc(cli_sbuf *b, char c) {
  return cli_sbuf_add(b, &c, 1);
}

const char *cli_sbuf_str(const cli_sbuf *b) {
  return b->data != NULL ? b->data : "";
}

char *cli_sbuf_take(cli_sbuf *b) {
  if (b->data == NULL && cli_sbuf_add(b, "", 0) != 0)
    return NULL;
  char *d = b->data;
  b->data = NULL;
  b->len = b->cap = 0;
  return d;
}

void cli_sbuf_reset(cli_sbuf *b) {
  b->len = 0;
  if (b->data != NULL)
    b->data[0] = '\0';
}

void cli_sbuf_free(cli_sbuf *b) {
  ratchet_free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *cli_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = ratchet_malloc(n);
  if (d != NULL)
    memcpy(d, s, n);
  return d;
}
