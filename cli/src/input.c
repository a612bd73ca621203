/*
 * input.c - record readers for `ratchet run` (input.h). An fd reader keeps
 * one buffer: bytes [start, end) are unread; a record is returned in place
 * (its separator replaced by a NUL) when a separator is found, else the
 * unread part moves to the front, the buffer grows if full, and more is
 * read. Memory follows the longest record, not the input.
 */
#include "input.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "diag.h"
#include "ratchet/alloc.h"
#include "sbuf.h"

#define CHUNK 65536

struct cli_input {
  /* fd source */
  int fd;
  bool own_fd;
  char sep;
  char *name;
  char *buf;
  size_t cap, start, end;
  bool eof;
  bool paced;    /* read() only with a credit from cli_input_readable */
  bool may_read; /* that credit */
  /* list source */
  char *const *items;
  size_t nitems;
  bool is_list;
  bool unterminated; /* the last record returned had no separator */
  uint64_t count;
};

int cli_input_from_fd(int fd, bool own_fd, char sep, const char *name,
                      cli_input **out) {
  cli_input *in = ratchet_calloc(1, sizeof *in);
  if (in == NULL)
    return -ENOMEM;
  in->name = cli_strdup(name);
  in->buf = ratchet_malloc(CHUNK + 1);
  if (in->name == NULL || in->buf == NULL) {
    ratchet_free(in->name);
    ratchet_free(in->buf);
    ratchet_free(in);
    return -ENOMEM;
  }
  in->cap = CHUNK;
  in->fd = fd;
  in->own_fd = own_fd;
  in->sep = sep;
  *out = in;
  return 0;
}

int cli_input_from_file(const char *flag, const char *path, char sep,
                        cli_input **out, cli_err *e) {
  char pshow[CLI_SHOW_PATH_SIZE];
  if (strcmp(path, "-") == 0)
    return cli_input_from_fd(0, false, sep, "stdin", out);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    cli_err_set(e, "%s: cannot open '%s': %s", flag, cli_show_path(path, pshow),
                strerror(err));
    return -err;
  }
  int rc = cli_input_from_fd(fd, true, sep, path, out);
  if (rc != 0)
    close(fd);
  return rc;
}

int cli_input_from_list(char *const *items, size_t n, cli_input **out) {
  cli_input *in = ratchet_calloc(1, sizeof *in);
  if (in == NULL)
    return -ENOMEM;
  in->fd = -1;
  in->is_list = true;
  in->items = items;
  in->nitems = n;
  *out = in;
  return 0;
}

/* Reads more bytes after in->end, growing or compacting first; -EAGAIN
 * when paced and out of reads. */
static int fill(cli_input *in, cli_err *e) {
  if (in->paced && !in->may_read)
    return -EAGAIN;
  in->may_read = false;
  if (in->start > 0) {
    memmove(in->buf, in->buf + in->start, in->end - in->start);
    in->end -= in->start;
    in->start = 0;
  }
  if (in->end == in->cap) {
    if (in->cap > ((size_t)1 << 40)) {
      cli_err_set(e, "%s: record %llu is too long", in->name,
                  (unsigned long long)in->count + 1);
      return -E2BIG;
    }
    char *b = ratchet_realloc(in->buf, in->cap * 2 + 1);
    if (b == NULL)
      return -ENOMEM;
    in->buf = b;
    in->cap *= 2;
  }
  for (;;) {
    ssize_t n = read(in->fd, in->buf + in->end, in->cap - in->end);
    if (n > 0) {
      in->end += (size_t)n;
      return 0;
    }
    if (n == 0) {
      in->eof = true;
      return 0;
    }
    if (errno == EINTR)
      continue;
    if (in->paced && (errno == EAGAIN || errno == EWOULDBLOCK))
      return -EAGAIN; /* someone made it non-blocking: wait for more */
    int err = errno;
    cli_err_set(e, "cannot read %s: %s", in->name, strerror(err));
    return -err;
  }
}

static int give(cli_input *in, char *rec, size_t len, const char **out,
                size_t *out_len, cli_err *e) {
  if (in->sep != '\0' && memchr(rec, '\0', len) != NULL) {
    cli_err_set(e,
                "%s: input %llu contains a NUL byte (use -0 for "
                "NUL-separated input)",
                in->name, (unsigned long long)in->count + 1);
    return -EINVAL;
  }
  rec[len] = '\0';
  in->count++;
  *out = rec;
  *out_len = len;
  return 1;
}

int cli_input_next(cli_input *in, const char **rec, size_t *len, cli_err *e) {
  if (in->is_list) {
    if (in->count >= in->nitems)
      return 0;
    *rec = in->items[in->count++];
    *len = strlen(*rec);
    return 1;
  }
  size_t scanned = in->start;
  for (;;) {
    char *hit = memchr(in->buf + scanned, in->sep, in->end - scanned);
    if (hit != NULL) {
      char *r = in->buf + in->start;
      size_t n = (size_t)(hit - r);
      in->start = (size_t)(hit - in->buf) + 1;
      in->unterminated = false;
      return give(in, r, n, rec, len, e);
    }
    if (in->eof) {
      if (in->end == in->start)
        return 0;
      char *r = in->buf + in->start;
      size_t n = in->end - in->start;
      in->start = in->end;
      in->unterminated = true;
      return give(in, r, n, rec, len, e); /* buf has room for the NUL */
    }
    size_t pending = in->end - in->start;
    int rc = fill(in, e);
    if (rc != 0)
      return rc;
    scanned = in->start + pending;
  }
}

int cli_input_fd(const cli_input *in) {
  return in->is_list ? -1 : in->fd;
}

void cli_input_set_paced(cli_input *in) {
  if (!in->is_list)
    in->paced = true;
}

void cli_input_readable(cli_input *in) {
  in->may_read = true;
}

bool cli_input_unterminated(const cli_input *in) {
  return in->unterminated;
}

uint64_t cli_input_count(const cli_input *in) {
  return in->count;
}

void cli_input_free(cli_input *in) {
  if (in == NULL)
    return;
  if (in->own_fd && in->fd >= 0)
    close(in->fd);
  ratchet_free(in->name);
  ratchet_free(in->buf);
  ratchet_free(in);
}
