/*
 * joblog.c - writes and reads the job log (joblog.h).
 *
 * Writing: each line is formatted into a reused buffer and appended with
 * one write(2) to an O_APPEND descriptor, so concurrent or interrupted
 * writers never interleave inside a line. No fsync: a kill -9 of ratchet
 * loses nothing the kernel has; a power cut may lose the last lines, which
 * then simply run again under --resume.
 *
 * Reading: the log is read line by line (input.c), each line split at tabs;
 * only Seq, Exitval and Signal matter. The (seq, outcome) pairs are
 * collected in file order, then sorted by seq with the later line winning,
 * so a lookup is a binary search.
 */
#include "joblog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "input.h"
#include "ratchet/alloc.h"

struct cli_joblog {
  int fd;
  cli_sbuf line;
};

typedef struct seen {
  uint64_t seq;
  uint64_t order;
  cli_joblog_outcome outcome;
} seen;

struct cli_joblog_state {
  seen *v;
  size_t n, cap;
};

static int add_escaped(cli_sbuf *b, const char *s) {
  int rc = 0;
  for (const char *p = s; rc == 0 && *p != '\0'; p++) {
    switch (*p) {
    case '\\':
      rc = cli_sbuf_adds(b, "\\\\");
      break;
    case '\t':
      rc = cli_sbuf_adds(b, "\\t");
      break;
    case '\n':
      rc = cli_sbuf_adds(b, "\\n");
      break;
    case '\r':
      rc = cli_sbuf_adds(b, "\\r");
      break;
    default:
      rc = cli_sbuf_addc(b, *p);
    }
  }
  return rc;
}

int cli_joblog_format(cli_sbuf *b, const cli_joblog_entry *en) {
  char head[256];
  int n = snprintf(
      head, sizeof head, "%llu\t%s\t%llu.%03u\t%llu.%03u\t%llu\t%llu\t%d\t%d\t",
      (unsigned long long)en->seq, en->host != NULL ? en->host : ":",
      (unsigned long long)(en->start_ms / 1000),
      (unsigned)(en->start_ms % 1000),
      (unsigned long long)(en->runtime_ms / 1000),
      (unsigned)(en->runtime_ms % 1000), (unsigned long long)en->send,
      (unsigned long long)en->receive, en->exitval, en->signal);
  if (n < 0 || (size_t)n >= sizeof head)
    return -EINVAL;
  char tail[64];
  int m = snprintf(tail, sizeof tail, "\t%u\t%d\n", (unsigned)en->attempts,
                   en->cached ? 1 : 0);
  int rc = cli_sbuf_add(b, head, (size_t)n);
  if (rc == 0)
    rc = add_escaped(b, en->command != NULL ? en->command : "");
  if (rc == 0)
    rc = cli_sbuf_add(b, tail, (size_t)m);
  return rc;
}

static int write_all(int fd, const char *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      return -EIO;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Cuts a last line that has no newline (a write cut short by a kill). */
static int cut_partial_line(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0)
    return -errno;
  off_t size = st.st_size;
  char buf[4096];
  off_t pos = size;
  while (pos > 0) {
    size_t chunk = pos > (off_t)sizeof buf ? sizeof buf : (size_t)pos;
    ssize_t n = pread(fd, buf, chunk, pos - (off_t)chunk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n != (ssize_t)chunk)
      return n < 0 ? -errno : -EIO;
    for (size_t i = chunk; i > 0; i--) {
      if (buf[i - 1] == '\n') {
        off_t keep = pos - (off_t)chunk + (off_t)i;
        if (keep != size && ftruncate(fd, keep) != 0)
          return -errno;
        return 0;
      }
    }
    pos -= (off_t)chunk;
  }
  if (size > 0 && ftruncate(fd, 0) != 0)
    return -errno;
  return 0;
}

int cli_joblog_open(const char *flag, const char *path, bool keep,
                    cli_joblog **out, cli_err *e) {
  char pshow[CLI_SHOW_PATH_SIZE];
  int flags = O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | (keep ? 0 : O_TRUNC);
  int fd = open(path, flags, 0644);
  int rc = 0;
  struct stat st;
  if (fd < 0) {
    rc = -errno;
    goto fail;
  }
  if (keep && (rc = cut_partial_line(fd)) != 0)
    goto fail;
  if (fstat(fd, &st) != 0) {
    rc = -errno;
    goto fail;
  }
  if (st.st_size == 0 &&
      (rc = write_all(fd, CLI_JOBLOG_HEADER, strlen(CLI_JOBLOG_HEADER))) != 0)
    goto fail;
  cli_joblog *j = ratchet_calloc(1, sizeof *j);
  if (j == NULL) {
    close(fd);
    return -ENOMEM;
  }
  j->fd = fd;
  *out = j;
  return 0;
fail:
  cli_err_set(e, "%s: cannot write '%s': %s", flag, cli_show_path(path, pshow),
              strerror(-rc));
  if (fd >= 0)
    close(fd);
  return rc;
}

int cli_joblog_write(cli_joblog *j, const cli_joblog_entry *en) {
  cli_sbuf_reset(&j->line);
  int rc = cli_joblog_format(&j->line, en);
  if (rc != 0)
    return rc;
  return write_all(j->fd, j->line.data, j->line.len);
}

void cli_joblog_close(cli_joblog *j) {
  if (j == NULL)
    return;
  close(j->fd);
  cli_sbuf_free(&j->line);
  ratchet_free(j);
}

/* Parses a decimal field that may be signed (Exitval can be -1 in GNU
 * parallel's logs). */
static int parse_int_field(const char *s, long long *v) {
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (end == s || *end != '\0' || errno != 0)
    return -EINVAL;
  *v = x;
  return 0;
}

/* Splits line in place at tabs into at most max fields. */
static size_t split_tabs(char *line, char **f, size_t max) {
  size_t n = 0;
  f[n++] = line;
  for (char *p = line; *p != '\0' && n < max; p++)
    if (*p == '\t') {
      *p = '\0';
      f[n++] = p + 1;
    }
  return n;
}

static int add_seen(cli_joblog_state *st, uint64_t seq,
                    cli_joblog_outcome outcome) {
  if (st->n == st->cap) {
    size_t cap = st->cap ? st->cap * 2 : 256;
    seen *v = ratchet_realloc(st->v, cap * sizeof *v);
    if (v == NULL)
      return -ENOMEM;
    st->v = v;
    st->cap = cap;
  }
  st->v[st->n] = (seen){seq, st->n, outcome};
  st->n++;
  return 0;
}

static int cmp_seen(const void *a, const void *b) {
  const seen *x = a, *y = b;
  if (x->seq != y->seq)
    return x->seq < y->seq ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order ? 1 : 0;
}

/* Sorts by seq and keeps the last line of each seq. */
static void settle(cli_joblog_state *st) {
  if (st->n == 0)
    return;
  qsort(st->v, st->n, sizeof *st->v, cmp_seen);
  size_t o = 0;
  for (size_t i = 0; i < st->n; i++) {
    if (o > 0 && st->v[o - 1].seq == st->v[i].seq)
      st->v[o - 1] = st->v[i];
    else
      st->v[o++] = st->v[i];
  }
  st->n = o;
}

int cli_joblog_read(const char *flag, const char *path, cli_joblog_state **out,
                    cli_err *e) {
  char pshow[CLI_SHOW_PATH_SIZE];
  cli_joblog_state *st = ratchet_calloc(1, sizeof *st);
  if (st == NULL)
    return -ENOMEM;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      *out = st;
      return 0;
    }
    int err = errno;
    cli_err_set(e, "%s: cannot read '%s': %s", flag, cli_show_path(path, pshow),
                strerror(err));
    ratchet_free(st);
    return -err;
  }
  cli_input *in;
  int rc = cli_input_from_fd(fd, true, '\n', path, &in);
  if (rc != 0) {
    close(fd);
    ratchet_free(st);
    return rc;
  }
  const char *rec;
  size_t len;
  cli_sbuf copy = CLI_SBUF_INIT;
  while ((rc = cli_input_next(in, &rec, &len, e)) == 1) {
    uint64_t line = cli_input_count(in);
    /* A line is whole only with its newline (written in the same
     * write(2)): a last line without one was cut short by a kill, and
     * its task counts as not done, however much of it parses. */
    if (cli_input_unterminated(in))
      break;
    cli_sbuf_reset(&copy);
    if ((rc = cli_sbuf_add(&copy, rec, len)) != 0)
      break;
    char *f[16];
    size_t nf = split_tabs(copy.data, f, 16);
    if (line == 1 && strcmp(f[0], "Seq") == 0)
      continue;
    long long seq, exitval, sig;
    if (nf < 9 || parse_int_field(f[0], &seq) != 0 || seq < 0 ||
        parse_int_field(f[6], &exitval) != 0 ||
        parse_int_field(f[7], &sig) != 0) {
      cli_err_set(e, "%s: %s:%llu: not a job log line", flag,
                  cli_show_path(path, pshow), (unsigned long long)line);
      rc = -EINVAL;
      break;
    }
    rc = add_seen(st, (uint64_t)seq,
                  exitval == 0 && sig == 0 ? CLI_JOBLOG_OK : CLI_JOBLOG_FAILED);
    if (rc != 0)
      break;
  }
  cli_sbuf_free(&copy);
  cli_input_free(in);
  if (rc < 0) {
    if (rc == -EINVAL && e != NULL && e->msg[0] == '\0')
      cli_err_set(e, "%s: cannot read '%s'", flag, cli_show_path(path, pshow));
    cli_joblog_state_free(st);
    return rc;
  }
  settle(st);
  *out = st;
  return 0;
}

cli_joblog_outcome cli_joblog_lookup(const cli_joblog_state *st, uint64_t seq) {
  size_t lo = 0, hi = st->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (st->v[mid].seq < seq)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < st->n && st->v[lo].seq == seq)
    return st->v[lo].outcome;
  return CLI_JOBLOG_ABSENT;
}

void cli_joblog_counts(const cli_joblog_state *st, uint64_t *ok,
                       uint64_t *failed) {
  uint64_t a = 0, b = 0;
  for (size_t i = 0; i < st->n; i++)
    if (st->v[i].outcome == CLI_JOBLOG_OK)
      a++;
    else
      b++;
  *ok = a;
  *failed = b;
}

bool cli_joblog_skip(const cli_joblog_state *st, uint64_t seq,
                     bool rerun_failed) {
  cli_joblog_outcome o = cli_joblog_lookup(st, seq);
  return rerun_failed ? o == CLI_JOBLOG_OK : o != CLI_JOBLOG_ABSENT;
}

void cli_joblog_state_free(cli_joblog_state *st) {
  if (st == NULL)
    return;
  ratchet_free(st->v);
  ratchet_free(st);
}
