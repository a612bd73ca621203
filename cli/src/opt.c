/*
 * opt.c - the option scanner of opt.h. A deliberate subset of getopt_long:
 * exact long names, no permutation of operands (the first operand ends the
 * options, as POSIX requires and as `ratchet run CMD -x` needs), and
 * messages returned rather than printed.
 */
#include "opt.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void cli_opt_init(cli_opt_scan *s, int argc, char **argv, int first,
                  const cli_opt_def *defs, size_t ndefs) {
  memset(s, 0, sizeof *s);
  s->argc = argc;
  s->argv = argv;
  s->index = first;
  s->defs = defs;
  s->ndefs = ndefs;
}

const cli_opt_def *cli_opt_find(const cli_opt_def *defs, size_t ndefs,
                                const char *name) {
  for (size_t i = 0; i < ndefs; i++)
    if (strcmp(defs[i].name, name) == 0)
      return &defs[i];
  return NULL;
}

static const cli_opt_def *find_short(const cli_opt_scan *s, char c) {
  for (size_t i = 0; i < s->ndefs; i++)
    if (s->defs[i].short_name == c)
      return &s->defs[i];
  return NULL;
}

static int next_long(cli_opt_scan *s, const char **value, cli_err *e) {
  char show[CLI_SHOW_SIZE];
  const char *arg = s->argv[s->index++] + 2;
  const char *eq = strchr(arg, '=');
  size_t len = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
  char name[64];
  if (len >= sizeof name) {
    cli_err_set(e, "unknown option '--%s'", cli_show(arg, show));
    return -EINVAL;
  }
  memcpy(name, arg, len);
  name[len] = '\0';
  snprintf(s->label, sizeof s->label, "--%s", name);
  const cli_opt_def *d = cli_opt_find(s->defs, s->ndefs, name);
  if (d == NULL) {
    cli_err_set(e, "unknown option '--%s'", cli_show(name, show));
    return -EINVAL;
  }
  *value = NULL;
  if (eq != NULL) {
    if (d->arg == CLI_ARG_NONE) {
      cli_err_set(e, "--%s takes no value (got '%s')", d->name,
                  cli_show(eq + 1, show));
      return -EINVAL;
    }
    *value = eq + 1;
  } else if (d->arg == CLI_ARG_REQUIRED) {
    if (s->index >= s->argc) {
      cli_err_set(e, "--%s needs a value (%s)", d->name,
                  d->metavar != NULL ? d->metavar : "VALUE");
      return -EINVAL;
    }
    *value = s->argv[s->index++];
  }
  return d->id;
}

static int next_short(cli_opt_scan *s, const char **value, cli_err *e) {
  const char *arg = s->argv[s->index];
  char c = arg[s->in_short];
  snprintf(s->label, sizeof s->label, "-%c", c);
  const cli_opt_def *d = find_short(s, c);
  if (d == NULL) {
    char show[CLI_SHOW_SIZE];
    char one[2] = {c, '\0'};
    cli_err_set(e, "unknown option '-%s'", cli_show(one, show));
    s->in_short = 0;
    s->index++;
    return -EINVAL;
  }
  *value = NULL;
  const char *rest = arg + s->in_short + 1;
  if (d->arg == CLI_ARG_NONE) {
    if (*rest == '\0') {
      s->in_short = 0;
      s->index++;
    } else {
      s->in_short++;
    }
    return d->id;
  }
  s->in_short = 0;
  s->index++;
  if (*rest != '\0') {
    *value = rest;
  } else if (d->arg == CLI_ARG_REQUIRED) {
    if (s->index >= s->argc) {
      cli_err_set(e, "-%c needs a value (%s)", c,
                  d->metavar != NULL ? d->metavar : "VALUE");
      return -EINVAL;
    }
    *value = s->argv[s->index++];
  }
  return d->id;
}

int cli_opt_next(cli_opt_scan *s, const char **value, cli_err *e) {
  *value = NULL;
  if (s->in_short > 0)
    return next_short(s, value, e);
  if (s->index >= s->argc)
    return 0;
  const char *arg = s->argv[s->index];
  if (strcmp(arg, "--") == 0) {
    s->index++;
    return 0;
  }
  if (arg[0] != '-' || arg[1] == '\0')
    return 0; /* an operand, or "-" (stdin) */
  if (arg[1] == '-')
    return next_long(s, value, e);
  s->in_short = 1;
  return next_short(s, value, e);
}

void cli_opt_print_help(const cli_opt_def *defs, size_t ndefs, void *file) {
  FILE *f = file;
  for (size_t i = 0; i < ndefs; i++) {
    const cli_opt_def *d = &defs[i];
    if (d->help == NULL)
      continue;
    char left[64];
    char head[8] = "    ";
    const char *mv = d->metavar != NULL ? d->metavar : "";
    if (d->short_name != 0)
      snprintf(head, sizeof head, "-%c, ", d->short_name);
    if (d->arg == CLI_ARG_OPTIONAL)
      snprintf(left, sizeof left, "%s--%s[=%s]", head, d->name, mv);
    else
      snprintf(left, sizeof left, "%s--%s%s%s", head, d->name,
               d->arg == CLI_ARG_REQUIRED ? " " : "", mv);
    fprintf(f, "  %-30s %s\n", left, d->help);
  }
}
