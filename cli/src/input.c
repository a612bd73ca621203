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
  size_t scan_off; /* bytes after start already searched for sep */
  bool paced;      /* read() only with a credit from cli_input_readable */
  bool may_read;   /* that credit */
  /* list source */
  char *const *items;
  size_t nitems;
  bool is_list;
  /* several lists: sets of linked lists, an odometer over the sets */
  const cli_input_group *groups;
  size_t ngroups, nsets;
  size_t *set_of;  /* the set of each list */
  size_t *set_len; /* each set's length: its longest list */
  size_t *idx;     /* each set's position */
  bool started, exhausted;
  bool wrap; /* --link: shorter lists start over */
  /* the values of the record last returned */
  char *colsep;
  size_t colsep_len;
  cli_sbuf joined;   /* several lists: the record, values joined by spaces */
  cli_sbuf cols;     /* --colsep: copies of the values, cut into columns */
  const char **vals; /* several lists: the current values */
  size_t *lens;      /* and their lengths */
  const char **fields;
  size_t nfields, cap_fields;
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

int cli_input_from_lists(char *const *items, const cli_input_group *groups,
                         size_t ngroups, bool link, cli_input **out) {
  if (ngroups <= 1)
    return cli_input_from_list(ngroups ? items + groups[0].first : items,
                               ngroups ? groups[0].n : 0, out);
  int rc = cli_input_from_list(items, 0, out);
  if (rc != 0)
    return rc;
  cli_input *in = *out;
  in->groups = groups;
  in->ngroups = ngroups;
  in->set_of = ratchet_calloc(ngroups, sizeof *in->set_of);
  in->set_len = ratchet_calloc(ngroups, sizeof *in->set_len);
  in->idx = ratchet_calloc(ngroups, sizeof *in->idx);
  in->fields = ratchet_calloc(ngroups, sizeof *in->fields);
  in->vals = ratchet_calloc(ngroups, sizeof *in->vals);
  in->lens = ratchet_calloc(ngroups, sizeof *in->lens);
  if (in->set_of == NULL || in->set_len == NULL || in->idx == NULL ||
      in->fields == NULL || in->vals == NULL || in->lens == NULL) {
    cli_input_free(in);
    *out = NULL;
    return -ENOMEM;
  }
  in->cap_fields = ngroups;
  in->wrap = link;
  bool empty = false;
  for (size_t g = 0; g < ngroups; g++) {
    if (g > 0 && !groups[g].linked && !link)
      in->nsets++;
    in->set_of[g] = in->nsets;
    empty |= groups[g].n == 0;
    if (link) {
      /* --link: as far as the longest, the others starting over. */
      if (groups[g].n > in->set_len[0])
        in->set_len[0] = groups[g].n;
    } else if (!groups[g].linked || groups[g].n < in->set_len[in->nsets]) {
      /* :::+ : side by side as far as the shortest. */
      in->set_len[in->nsets] = groups[g].n;
    }
  }
  if (link && empty)
    in->set_len[0] = 0;
  in->nsets++;
  return 0;
}

int cli_input_set_colsep(cli_input *in, const char *sep) {
  ratchet_free(in->colsep);
  in->colsep = cli_strdup(sep);
  if (in->colsep == NULL)
    return -ENOMEM;
  in->colsep_len = strlen(sep);
  return 0;
}

void cli_input_fields(const cli_input *in, const char *const **fields,
                      size_t *n) {
  *fields = in->nfields > 0 ? in->fields : NULL;
  *n = in->nfields;
}

static int push_field(cli_input *in, const char *f) {
  if (in->nfields == in->cap_fields) {
    size_t cap = in->cap_fields ? in->cap_fields * 2 : 8;
    const char **v = ratchet_realloc(in->fields, cap * sizeof *v);
    if (v == NULL)
      return -ENOMEM;
    in->fields = v;
    in->cap_fields = cap;
  }
  in->fields[in->nfields++] = f;
  return 0;
}

/* The fields of a record whose values are vals[0..n): with --colsep each
 * value cut into its columns (copies in in->cols), else the values
 * themselves when there are several; none for a single plain value. */
static int make_fields(cli_input *in, const char *const *vals,
                       const size_t *lens, size_t n) {
  in->nfields = 0;
  if (in->colsep == NULL) {
    for (size_t i = 0; n > 1 && i < n; i++)
      if (push_field(in, vals[i]) != 0)
        return -ENOMEM;
    return 0;
  }
  /* Copy first, cut after: the copies do not move while being cut. */
  cli_sbuf_reset(&in->cols);
  for (size_t i = 0; i < n; i++)
    if (cli_sbuf_add(&in->cols, vals[i], lens[i]) != 0 ||
        cli_sbuf_addc(&in->cols, '\0') != 0)
      return -ENOMEM;
  char *p = in->cols.data;
  for (size_t i = 0; i < n; i++) {
    char *seg = p, *end = p + lens[i];
    for (;;) {
      if (push_field(in, seg) != 0)
        return -ENOMEM;
      char *hit = NULL;
      for (char *q = seg; q + in->colsep_len <= end; q++)
        if (memcmp(q, in->colsep, in->colsep_len) == 0) {
          hit = q;
          break;
        }
      if (hit == NULL)
        break;
      *hit = '\0';
      seg = hit + in->colsep_len;
    }
    p = end + 1;
  }
  return 0;
}

/* The next combination of several lists, joined into in->joined. */
static int next_combination(cli_input *in, const char **rec, size_t *len) {
  if (in->exhausted)
    return 0;
  if (!in->started) {
    in->started = true;
    for (size_t k = 0; k < in->nsets; k++)
      if (in->set_len[k] == 0)
        in->exhausted = true;
  } else {
    size_t k = in->nsets;
    for (; k > 0; k--) {
      if (++in->idx[k - 1] < in->set_len[k - 1])
        break;
      in->idx[k - 1] = 0;
    }
    if (k == 0)
      in->exhausted = true;
  }
  if (in->exhausted)
    return 0;
  cli_sbuf_reset(&in->joined);
  size_t *lens = in->lens;
  int rc = 0;
  for (size_t g = 0; rc == 0 && g < in->ngroups; g++) {
    const cli_input_group *gr = &in->groups[g];
    size_t at = in->idx[in->set_of[g]];
    in->vals[g] = in->items[gr->first + (in->wrap ? at % gr->n : at)];
    lens[g] = strlen(in->vals[g]);
    if (g > 0)
      rc = cli_sbuf_addc(&in->joined, ' ');
    if (rc == 0)
      rc = cli_sbuf_add(&in->joined, in->vals[g], lens[g]);
  }
  if (rc == 0)
    rc = make_fields(in, in->vals, lens, in->ngroups);
  if (rc != 0)
    return rc;
  in->count++;
  *rec = cli_sbuf_str(&in->joined);
  *len = in->joined.len;
  return 1;
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

static int next_record(cli_input *in, const char **rec, size_t *len,
                       cli_err *e);

int cli_input_next(cli_input *in, const char **rec, size_t *len, cli_err *e) {
  in->nfields = 0;
  if (in->ngroups > 1) {
    int rc = next_combination(in, rec, len);
    if (rc < 0)
      cli_err_set(e, "out of memory");
    return rc;
  }
  int rc = next_record(in, rec, len, e);
  if (rc == 1 && in->colsep != NULL && make_fields(in, rec, len, 1) != 0) {
    cli_err_set(e, "out of memory");
    return -ENOMEM;
  }
  return rc;
}

static int next_record(cli_input *in, const char **rec, size_t *len,
                       cli_err *e) {
  if (in->is_list) {
    if (in->count >= in->nitems)
      return 0;
    *rec = in->items[in->count++];
    *len = strlen(*rec);
    return 1;
  }
  /* A paced reader comes back after each read: the part of a long record
   * already searched is not searched again. */
  size_t scanned = in->start + in->scan_off;
  for (;;) {
    char *hit = memchr(in->buf + scanned, in->sep, in->end - scanned);
    if (hit != NULL) {
      char *r = in->buf + in->start;
      size_t n = (size_t)(hit - r);
      in->start = (size_t)(hit - in->buf) + 1;
      in->unterminated = false;
      in->scan_off = 0;
      return give(in, r, n, rec, len, e);
    }
    if (in->eof) {
      in->scan_off = 0;
      if (in->end == in->start)
        return 0;
      char *r = in->buf + in->start;
      size_t n = in->end - in->start;
      in->start = in->end;
      in->unterminated = true;
      return give(in, r, n, rec, len, e); /* buf has room for the NUL */
    }
    size_t pending = in->end - in->start;
    in->scan_off = pending; /* fill keeps the bytes from start on */
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
  ratchet_free(in->set_of);
  ratchet_free(in->set_len);
  ratchet_free(in->idx);
  ratchet_free(in->fields);
  ratchet_free(in->colsep);
  cli_sbuf_free(&in->joined);
  cli_sbuf_free(&in->cols);
  ratchet_free(in->vals);
  ratchet_free(in->lens);
  ratchet_free(in->name);
  ratchet_free(in->buf);
  ratchet_free(in);
}
