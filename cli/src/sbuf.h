/*
 * sbuf.h - a growable, always NUL-terminated byte string for the command
 * line's builders, allocated through ratchet's allocator.
 */
#ifndef RATCHET_CLI_SBUF_H
#define RATCHET_CLI_SBUF_H

#include <stddef.h>

typedef struct cli_sbuf {
  char *data; /* NULL until the first append */
  size_t len;
  size_t cap;
} cli_sbuf;

#define CLI_SBUF_INIT                                                          \
  { NULL, 0, 0 }

/* Appends len bytes / a string / one byte. 0, or -ENOMEM (unchanged). */
int cli_sbuf_add(cli_sbuf *b, const void *p, size_t len);
int cli_sbuf_adds(cli_sbuf *b, const char *s);
int cli_sbuf_addc(cli_sbuf *b, char c);
/* The contents as a string ("" when empty; borrowed). */
const char *cli_sbuf_str(const cli_sbuf *b);
/* Hands the buffer over (free with ratchet_free; never NULL on success:
 * an empty string is allocated) and resets b. NULL on -ENOMEM. */
char *cli_sbuf_take(cli_sbuf *b);
void cli_sbuf_reset(cli_sbuf *b);
void cli_sbuf_free(cli_sbuf *b);

/* A copy of s through ratchet_malloc, or NULL. */
char *cli_strdup(const char *s);

#endif
