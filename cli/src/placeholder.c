/*
 * placeholder.c - expands GNU parallel's replacement strings (see
 * placeholder.h). The template is scanned once; each recognised
 * placeholder's value is computed from the input by slicing it (no
 * allocation besides the output) and appended, quoted if asked.
 */
#include "placeholder.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef enum ph {
  PH_NONE = 0,
  PH_INPUT,     /* {} */
  PH_NOEXT,     /* {.} */
  PH_BASE,      /* {/} */
  PH_DIR,       /* {//} */
  PH_BASENOEXT, /* {/.} */
  PH_SEQ        /* {#} */
} ph;

static const struct {
  const char *text;
  size_t len;
  ph kind;
} table[] = {
    {"{}", 2, PH_INPUT}, {"{.}", 3, PH_NOEXT},      {"{/}", 3, PH_BASE},
    {"{//}", 4, PH_DIR}, {"{/.}", 4, PH_BASENOEXT}, {"{#}", 3, PH_SEQ},
};

/* Positions above this are not placeholders ({99999} stays text). */
#define MAX_POSITION 9999

/* The placeholder at s ('{'): its kind and length, and for {N...} its N
 * (else 0). */
static ph match(const char *s, size_t *len, size_t *pos) {
  *pos = 0;
  for (size_t i = 0; i < sizeof table / sizeof *table; i++)
    if (strncmp(s, table[i].text, table[i].len) == 0) {
      *len = table[i].len;
      return table[i].kind;
    }
  /* {N}, {N.}, {N/}, {N//}, {N/.}: the same slices of the Nth value. */
  size_t i = 1, n = 0;
  while (s[i] >= '0' && s[i] <= '9' && n <= MAX_POSITION)
    n = n * 10 + (size_t)(s[i++] - '0');
  if (i == 1 || n == 0 || n > MAX_POSITION)
    return PH_NONE;
  static const struct {
    const char *tail;
    ph kind;
  } tails[] = {{"}", PH_INPUT},
               {".}", PH_NOEXT},
               {"/}", PH_BASE},
               {"//}", PH_DIR},
               {"/.}", PH_BASENOEXT}};
  for (size_t k = 0; k < sizeof tails / sizeof *tails; k++) {
    size_t tl = strlen(tails[k].tail);
    if (strncmp(s + i, tails[k].tail, tl) == 0) {
      *len = i + tl;
      *pos = n;
      return tails[k].kind;
    }
  }
  return PH_NONE;
}

/* A '{' right after a '$' is the shell's (${1}, ${#}), never ours: a
 * script written for `sh -c '...' _ {}` keeps working. */
static bool at_placeholder(const char *start, const char *p) {
  return *p == '{' && !(p > start && p[-1] == '$');
}

bool cli_has_placeholder(const char *s) {
  size_t len, pos;
  for (const char *p = s; *p != '\0'; p++)
    if (at_placeholder(s, p) && match(p, &len, &pos) != PH_NONE)
      return true;
  return false;
}

bool cli_is_value_placeholder(const char *tok) {
  size_t len, pos;
  if (*tok != '{')
    return false;
  ph kind = match(tok, &len, &pos);
  return kind != PH_NONE && kind != PH_SEQ && pos == 0 && tok[len] == '\0';
}

static int add_value(cli_sbuf *b, const char *p, size_t len, bool quote) {
  if (!quote)
    return cli_sbuf_add(b, p, len);
  /* Quoting needs a string; values are short slices of the input. */
  cli_sbuf tmp = CLI_SBUF_INIT;
  int rc = cli_sbuf_add(&tmp, p, len);
  if (rc == 0)
    rc = cli_shell_quote(b, cli_sbuf_str(&tmp));
  cli_sbuf_free(&tmp);
  return rc;
}

/* Where the extension of the base name [base, end) starts, or end. */
static const char *ext_start(const char *base, const char *end) {
  for (const char *p = end; p > base + 1; p--)
    if (p[-1] == '.')
      return p - 1;
  return end;
}

static int add_placeholder(cli_sbuf *b, ph kind, const char *in, uint64_t seq,
                           bool quote) {
  const char *end = in + strlen(in);
  const char *slash = strrchr(in, '/');
  const char *base = slash != NULL ? slash + 1 : in;
  switch (kind) {
  case PH_INPUT:
    return add_value(b, in, (size_t)(end - in), quote);
  case PH_NOEXT: {
    const char *x = ext_start(base, end);
    return add_value(b, in, (size_t)(x - in), quote);
  }
  case PH_BASE:
    return add_value(b, base, (size_t)(end - base), quote);
  case PH_DIR:
    if (slash == NULL)
      return add_value(b, ".", 1, quote);
    if (slash == in)
      return add_value(b, "/", 1, quote);
    return add_value(b, in, (size_t)(slash - in), quote);
  case PH_BASENOEXT: {
    const char *x = ext_start(base, end);
    return add_value(b, base, (size_t)(x - base), quote);
  }
  case PH_SEQ: {
    char num[24];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)seq);
    return cli_sbuf_add(b, num, (size_t)n);
  }
  case PH_NONE:
    break;
  }
  return -EINVAL;
}

/* The value {N...} stands for: {} itself for N = 1 of a single value,
 * and "" past the last. */
static const char *value_at(const cli_values *v, size_t pos) {
  if (pos == 0)
    return v->all;
  if (v->fields == NULL || v->n == 0)
    return pos == 1 ? v->all : "";
  return pos <= v->n ? v->fields[pos - 1] : "";
}

int cli_expand(cli_sbuf *b, const char *tmpl, const char *input, uint64_t seq,
               bool quote) {
  cli_values v = cli_values_one(input);
  return cli_expand_values(b, tmpl, &v, seq, quote);
}

int cli_expand_values(cli_sbuf *b, const char *tmpl, const cli_values *v,
                      uint64_t seq, bool quote) {
  const char *lit = tmpl;
  const char *p = tmpl;
  while (*p != '\0') {
    size_t len, pos;
    ph kind = at_placeholder(tmpl, p) ? match(p, &len, &pos) : PH_NONE;
    if (kind == PH_NONE) {
      p++;
      continue;
    }
    int rc = cli_sbuf_add(b, lit, (size_t)(p - lit));
    if (rc == 0 && kind != PH_SEQ && pos == 0 && v->fields != NULL &&
        v->n > 0) {
      /* {} of several values: each value (sliced, quoted) in turn. */
      for (size_t k = 0; rc == 0 && k < v->n; k++) {
        if (k > 0)
          rc = cli_sbuf_addc(b, ' ');
        if (rc == 0)
          rc = add_placeholder(b, kind, v->fields[k], seq, quote);
      }
    } else if (rc == 0) {
      rc = add_placeholder(b, kind, value_at(v, pos), seq, quote);
    }
    if (rc != 0)
      return rc;
    p += len;
    lit = p;
  }
  return cli_sbuf_add(b, lit, (size_t)(p - lit));
}

int cli_shell_quote(cli_sbuf *b, const char *s) {
  static const char safe[] = "abcdefghijklmnopqrstuvwxyz"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789-_./:,+@%^";
  if (*s != '\0' && strspn(s, safe) == strlen(s))
    return cli_sbuf_adds(b, s);
  int rc = cli_sbuf_addc(b, '\'');
  for (const char *p = s; rc == 0 && *p != '\0'; p++)
    rc = *p == '\'' ? cli_sbuf_adds(b, "'\\''") : cli_sbuf_addc(b, *p);
  if (rc == 0)
    rc = cli_sbuf_addc(b, '\'');
  return rc;
}
