/*
 * backoff_opts.c - parses the names of `--backoff` and `--jitter`
 * (backoff_opts.h). The durations that go with them are durations
 * (duration.h); the combination is checked in run_options.c.
 */
#include "backoff_opts.h"

#include <errno.h>
#include <string.h>

#include "duration.h"

int cli_parse_backoff_kind(const char *flag, const char *s, cli_backoff_kind *k,
                           cli_err *e) {
  char show[CLI_SHOW_SIZE];
  if (s != NULL && (strcmp(s, "exp") == 0 || strcmp(s, "exponential") == 0))
    *k = CLI_BACKOFF_EXPONENTIAL;
  else if (s != NULL && strcmp(s, "linear") == 0)
    *k = CLI_BACKOFF_LINEAR;
  else if (s != NULL && strcmp(s, "constant") == 0)
    *k = CLI_BACKOFF_CONSTANT;
  else if (s != NULL && strcmp(s, "decorrelated") == 0)
    *k = CLI_BACKOFF_DECORRELATED;
  else {
    cli_err_set(e,
                "%s: invalid backoff '%s' (expected exp, linear, constant or "
                "decorrelated)",
                flag, cli_show(s, show));
    return -EINVAL;
  }
  return 0;
}

int cli_parse_jitter(const char *flag, const char *s, cli_jitter *j,
                     cli_err *e) {
  char show[CLI_SHOW_SIZE];
  cli_jitter r = {CLI_JITTER_FULL, 0.0};
  if (s != NULL && strcmp(s, "full") == 0)
    r.kind = CLI_JITTER_FULL;
  else if (s != NULL && strcmp(s, "equal") == 0)
    r.kind = CLI_JITTER_EQUAL;
  else if (s != NULL && strcmp(s, "none") == 0)
    r.kind = CLI_JITTER_NONE;
  else if (s != NULL && *s != '\0' && s[strlen(s) - 1] == '%') {
    if (cli_parse_percent(flag, s, &r.percent, e) != 0)
      return -EINVAL;
    r.kind = CLI_JITTER_PROPORTIONAL;
  } else {
    cli_err_set(e,
                "%s: invalid jitter '%s' (expected full, equal, none or P%%)",
                flag, cli_show(s, show));
    return -EINVAL;
  }
  *j = r;
  return 0;
}

const char *cli_backoff_kind_name(cli_backoff_kind k) {
  switch (k) {
  case CLI_BACKOFF_EXPONENTIAL:
    return "exponential";
  case CLI_BACKOFF_LINEAR:
    return "linear";
  case CLI_BACKOFF_CONSTANT:
    return "constant";
  case CLI_BACKOFF_DECORRELATED:
    return "decorrelated";
  }
  return "?";
}

const char *cli_jitter_kind_name(cli_jitter_kind k) {
  switch (k) {
  case CLI_JITTER_FULL:
    return "full";
  case CLI_JITTER_EQUAL:
    return "equal";
  case CLI_JITTER_NONE:
    return "none";
  case CLI_JITTER_PROPORTIONAL:
    return "proportional";
  }
  return "?";
}
