/*
 * run_output.c - prints finished tasks whole (run_output.h).
 *
 * A task's stdout and stderr arrive either in memory or, past
 * --output-buffer, as the worker's spill files. Printing copies them to
 * our stdout and stderr with write(2) in 64 KiB pieces, adding the --tag
 * prefix at each line start, so that a 10 MB output never needs 10 MB of
 * our memory. With -k a result that is not yet due is copied: its memory
 * into our own buffer, its spill files renamed (same directory, ".held"
 * appended) because the orchestrator deletes them after the callback. The
 * held results sit in a ring indexed by order modulo the window, which the
 * driver keeps larger than the number of outstanding tasks. --json builds
 * one object per task with jansson; bytes that are not UTF-8 become
 * U+FFFD so that the line always parses.
 */
#include "run_output.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ratchet/alloc.h"
#include "sbuf.h"

#define CHUNK 65536

typedef struct held {
  bool present;
  cli_out_rec r; /* strings below are owned copies */
  char *input, *command, *status, *error;
  char *out, *err;
  char *out_path, *err_path;
} held;

struct cli_out {
  bool keep_order, tag, json, lines;
  uint32_t window;
  int out_fd, err_fd;
  bool err_open_line; /* a task's stderr ended without a newline */
  uint64_t next;
  held *ring;
  cli_out_before_fn before;
  void *before_ctx;
};

static int write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n > 0) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return w < 0 ? -errno : -EIO;
    c += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Writes one piece, prefixing each line start with tag (NULL: none).
 * *bol says whether the piece starts a line, and is updated. */
static int write_piece(int fd, const char *tag, bool *bol, const char *p,
                       size_t n) {
  if (tag == NULL)
    return write_all(fd, p, n);
  cli_sbuf b = CLI_SBUF_INIT;
  int rc = 0;
  size_t i = 0;
  while (rc == 0 && i < n) {
    if (*bol)
      rc = cli_sbuf_adds(&b, tag);
    const char *nl = memchr(p + i, '\n', n - i);
    size_t end = nl != NULL ? (size_t)(nl - p) + 1 : n;
    if (rc == 0)
      rc = cli_sbuf_add(&b, p + i, end - i);
    *bol = nl != NULL;
    i = end;
  }
  if (rc == 0)
    rc = write_all(fd, b.data, b.len);
  cli_sbuf_free(&b);
  return rc;
}

/* Calls fn on each piece of the file at path, read CHUNK bytes at a
 * time; stops at fn's first non-zero return, which it returns. */
static int each_piece(const char *path,
                      int (*fn)(void *ctx, const char *p, size_t n),
                      void *ctx) {
  int in = open(path, O_RDONLY | O_CLOEXEC);
  if (in < 0)
    return -errno;
  char *buf = ratchet_malloc(CHUNK);
  if (buf == NULL) {
    close(in);
    return -ENOMEM;
  }
  int rc = 0;
  for (;;) {
    ssize_t n = read(in, buf, CHUNK);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      rc = -errno;
    if (n <= 0)
      break;
    if ((rc = fn(ctx, buf, (size_t)n)) != 0)
      break;
  }
  ratchet_free(buf);
  close(in);
  return rc;
}

/* Where copy_stream is: the output, and what it has written so far. */
typedef struct copy_state {
  int fd;
  const char *tag;
  bool bol;
  size_t total;
  char last;
} copy_state;

static int copy_piece(void *ctx, const char *p, size_t n) {
  copy_state *c = ctx;
  c->total += n;
  c->last = p[n - 1];
  return write_piece(c->fd, c->tag, &c->bol, p, n);
}

/* Copies one stream (memory or file) to fd. A tagged stream that does not
 * end with a newline gets one, as GNU parallel does. *open_line (if not
 * NULL) says whether fd was left in the middle of a line. */
static int copy_stream(int fd, const char *tag, bool lines, const void *mem,
                       size_t len, const char *path, bool *open_line) {
  copy_state c = {fd, tag, true, 0, '\n'};
  int rc = 0;
  if (path != NULL && path[0] != '\0')
    rc = each_piece(path, copy_piece, &c);
  else if (len > 0)
    rc = copy_piece(&c, mem, len);
  bool add_newline = (tag != NULL || lines) && c.total > 0 && c.last != '\n';
  if (rc == 0 && add_newline)
    rc = write_all(fd, "\n", 1);
  if (open_line != NULL && c.total > 0)
    *open_line = !add_newline && c.last != '\n';
  return rc;
}

/* ---- JSON ------------------------------------------------------------- */

/* Appends s as valid UTF-8: bytes that do not form a character become
 * U+FFFD. */
static int utf8_clean(cli_sbuf *b, const unsigned char *s, size_t n) {
  size_t i = 0;
  int rc = 0;
  while (rc == 0 && i < n) {
    unsigned char c = s[i];
    size_t more = 99; /* continuation bytes the lead byte announces */
    if (c < 0x80)
      more = 0;
    else if (c >= 0xc2 && c <= 0xdf)
      more = 1;
    else if ((c & 0xf0) == 0xe0)
      more = 2;
    else if (c >= 0xf0 && c <= 0xf4)
      more = 3;
    bool ok = more != 99 && more < n - i;
    for (size_t k = 1; ok && k <= more; k++)
      ok = (s[i + k] & 0xc0) == 0x80;
    /* Overlong three- and four-byte forms, surrogates, and code points
     * beyond U+10FFFF. */
    if (ok && more == 2 &&
        ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] >= 0xa0)))
      ok = false;
    if (ok && more == 3 &&
        ((c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] >= 0x90)))
      ok = false;
    if (ok) {
      rc = cli_sbuf_add(b, s + i, more + 1);
      i += more + 1;
    } else {
      rc = cli_sbuf_add(b, "\xef\xbf\xbd", 3);
      i++;
    }
  }
  return rc;
}

static int add_piece(void *ctx, const char *p, size_t n) {
  return cli_sbuf_add(ctx, p, n);
}

static int read_file(const char *path, cli_sbuf *b) {
  return each_piece(path, add_piece, b);
}

/* A JSON string of a stream; NULL on -ENOMEM. */
static json_t *json_stream(const void *mem, size_t len, const char *path) {
  cli_sbuf raw = CLI_SBUF_INIT, clean = CLI_SBUF_INIT;
  const void *p = mem;
  size_t n = len;
  if (path != NULL && path[0] != '\0') {
    if (read_file(path, &raw) != 0) {
      cli_sbuf_free(&raw);
      return NULL;
    }
    p = raw.data;
    n = raw.len;
  }
  json_t *j = NULL;
  if (utf8_clean(&clean, p, n) == 0)
    j = json_stringn(clean.data != NULL ? clean.data : "", clean.len);
  cli_sbuf_free(&raw);
  cli_sbuf_free(&clean);
  return j;
}

static json_t *json_text(const char *s) {
  cli_sbuf clean = CLI_SBUF_INIT;
  json_t *j = NULL;
  if (utf8_clean(&clean, (const unsigned char *)s, strlen(s)) == 0)
    j = json_stringn(clean.data != NULL ? clean.data : "", clean.len);
  cli_sbuf_free(&clean);
  return j;
}

static int print_json(cli_out *o, const cli_out_rec *r) {
  json_t *obj = json_object();
  if (obj == NULL)
    return -ENOMEM;
  int bad = 0;
  bad |= json_object_set_new(obj, "seq", json_integer((json_int_t)r->seq));
  bad |= json_object_set_new(obj, "input", json_text(r->input));
  bad |= json_object_set_new(obj, "command", json_text(r->command));
  bad |= json_object_set_new(obj, "status", json_string(r->status));
  bad |= json_object_set_new(obj, "exit", json_integer(r->exit_code));
  bad |= json_object_set_new(obj, "signal", json_integer(r->term_signal));
  bad |= json_object_set_new(obj, "attempts", json_integer(r->attempts));
  bad |= json_object_set_new(obj, "cached", json_boolean(r->cached));
  bad |= json_object_set_new(obj, "duration_ms",
                             json_integer((json_int_t)r->duration_ms));
  bad |= json_object_set_new(obj, "stdout",
                             json_stream(r->out, r->out_len, r->out_path));
  bad |= json_object_set_new(obj, "stderr",
                             json_stream(r->err, r->err_len, r->err_path));
  if (r->error != NULL && r->error[0] != '\0')
    bad |= json_object_set_new(obj, "error", json_text(r->error));
  char *line = bad == 0 ? json_dumps(obj, JSON_COMPACT) : NULL;
  json_decref(obj);
  if (line == NULL)
    return -ENOMEM;
  size_t n = strlen(line);
  int rc = write_all(o->out_fd, line, n);
  if (rc == 0)
    rc = write_all(o->out_fd, "\n", 1);
  free(line);
  return rc;
}

/* ---- printing ---------------------------------------------------------- */

static int print_now(cli_out *o, const cli_out_rec *r) {
  if (o->before != NULL)
    o->before(o->before_ctx);
  if (o->json)
    return print_json(o, r);
  cli_sbuf tag = CLI_SBUF_INIT;
  if (o->tag &&
      (cli_sbuf_adds(&tag, r->input) != 0 || cli_sbuf_addc(&tag, '\t') != 0)) {
    cli_sbuf_free(&tag);
    return -ENOMEM;
  }
  const char *t = o->tag ? tag.data : NULL;
  int rc = copy_stream(o->out_fd, t, o->lines, r->out, r->out_len, r->out_path,
                       NULL);
  if (rc == 0)
    rc = copy_stream(o->err_fd, t, false, r->err, r->err_len, r->err_path,
                     &o->err_open_line);
  cli_sbuf_free(&tag);
  return rc;
}

static void held_clear(held *h) {
  if (h->out_path != NULL)
    (void)unlink(h->out_path);
  if (h->err_path != NULL)
    (void)unlink(h->err_path);
  ratchet_free(h->input);
  ratchet_free(h->command);
  ratchet_free(h->status);
  ratchet_free(h->error);
  ratchet_free(h->out);
  ratchet_free(h->err);
  ratchet_free(h->out_path);
  ratchet_free(h->err_path);
  memset(h, 0, sizeof *h);
}

static char *dup_bytes(const void *p, size_t n) {
  char *d = ratchet_malloc(n + 1);
  if (d != NULL) {
    if (n > 0)
      memcpy(d, p, n);
    d[n] = '\0';
  }
  return d;
}

/* Moves a spill file out of the orchestrator's way; *dst gets the new
 * path. */
static int keep_file(const char *src, char **dst) {
  *dst = NULL;
  if (src == NULL || src[0] == '\0')
    return 0;
  cli_sbuf b = CLI_SBUF_INIT;
  if (cli_sbuf_adds(&b, src) != 0 || cli_sbuf_adds(&b, ".held") != 0) {
    cli_sbuf_free(&b);
    return -ENOMEM;
  }
  if (rename(src, b.data) != 0) {
    int rc = -errno;
    cli_sbuf_free(&b);
    return rc;
  }
  *dst = cli_sbuf_take(&b);
  return *dst != NULL ? 0 : -ENOMEM;
}

static int hold(held *h, const cli_out_rec *r) {
  memset(h, 0, sizeof *h);
  h->present = true;
  h->r = *r;
  h->input = cli_strdup(r->input);
  h->command = cli_strdup(r->command);
  h->status = cli_strdup(r->status);
  h->error = cli_strdup(r->error != NULL ? r->error : "");
  h->out = dup_bytes(r->out, r->out_len);
  h->err = dup_bytes(r->err, r->err_len);
  int rc = h->input && h->command && h->status && h->error && h->out && h->err
               ? 0
               : -ENOMEM;
  if (rc == 0)
    rc = keep_file(r->out_path, &h->out_path);
  if (rc == 0)
    rc = keep_file(r->err_path, &h->err_path);
  if (rc != 0) {
    held_clear(h);
    return rc;
  }
  h->r.input = h->input;
  h->r.command = h->command;
  h->r.status = h->status;
  h->r.error = h->error;
  h->r.out = h->out;
  h->r.err = h->err;
  h->r.out_path = h->out_path;
  h->r.err_path = h->err_path;
  return 0;
}

/* Prints held results from next on, as long as they are there. */
static int drain(cli_out *o) {
  int rc = 0;
  for (;;) {
    held *h = &o->ring[o->next % o->window];
    if (!h->present || h->r.order != o->next)
      return rc;
    int prc = print_now(o, &h->r);
    if (rc == 0)
      rc = prc;
    held_clear(h);
    o->next++;
  }
}

int cli_out_new(bool keep_order, bool tag, bool json, uint32_t window,
                int out_fd, int err_fd, cli_out **out) {
  cli_out *o = ratchet_calloc(1, sizeof *o);
  if (o == NULL)
    return -ENOMEM;
  o->keep_order = keep_order;
  o->tag = tag;
  o->json = json;
  o->window = window < 1 ? 1 : window;
  o->out_fd = out_fd;
  o->err_fd = err_fd;
  if (keep_order) {
    o->ring = ratchet_calloc(o->window, sizeof *o->ring);
    if (o->ring == NULL) {
      ratchet_free(o);
      return -ENOMEM;
    }
  }
  *out = o;
  return 0;
}

void cli_out_set_lines(cli_out *o, bool on) {
  o->lines = on;
}

void cli_out_end_line(cli_out *o) {
  if (o == NULL || !o->err_open_line)
    return;
  o->err_open_line = false;
  (void)write_all(o->err_fd, "\n", 1);
}

void cli_out_set_before(cli_out *o, cli_out_before_fn fn, void *ctx) {
  o->before = fn;
  o->before_ctx = ctx;
}

int cli_out_task(cli_out *o, const cli_out_rec *r) {
  if (!o->keep_order)
    return print_now(o, r);
  if (r->order == o->next) {
    int rc = print_now(o, r);
    o->next++;
    int drc = drain(o);
    return rc != 0 ? rc : drc;
  }
  if (r->order < o->next || r->order - o->next >= o->window)
    return -EINVAL; /* the driver broke its promise: print it anyway */
  held *h = &o->ring[r->order % o->window];
  if (h->present)
    return -EINVAL;
  int rc = hold(h, r);
  if (rc != 0) /* cannot hold it: better out of order than lost */
    return print_now(o, r);
  return 0;
}

uint64_t cli_out_next(const cli_out *o) {
  return o->next;
}

int cli_out_flush(cli_out *o) {
  if (!o->keep_order)
    return 0;
  int rc = 0;
  for (uint32_t i = 0; i < o->window; i++) {
    /* Skip a gap: find the smallest held order. */
    uint64_t best = UINT64_MAX;
    for (uint32_t k = 0; k < o->window; k++)
      if (o->ring[k].present && o->ring[k].r.order < best)
        best = o->ring[k].r.order;
    if (best == UINT64_MAX)
      break;
    o->next = best;
    int drc = drain(o);
    if (rc == 0)
      rc = drc;
  }
  return rc;
}

void cli_out_free(cli_out *o) {
  if (o == NULL)
    return;
  if (o->ring != NULL)
    for (uint32_t i = 0; i < o->window; i++)
      if (o->ring[i].present)
        held_clear(&o->ring[i]);
  ratchet_free(o->ring);
  ratchet_free(o);
}
