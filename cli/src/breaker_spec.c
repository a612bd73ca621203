/*
 * breaker_spec.c - parses `--breaker SPEC` (breaker_spec.h). The spec is
 * split at commas into KEY=VALUE pairs; each key has its own parser and
 * range, and the cross-key rule (min may not exceed a count window) is
 * checked once all are read. The first error wins and names its key.
 */
#include "breaker_spec.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "duration.h"

#define WINDOW_MAX      100000
#define TIME_WINDOW_MIN UINT64_C(1000000000)
#define TIME_WINDOW_MAX UINT64_C(3600000000000)

static int set_key(const char *flag, const char *key, const char *val,
                   cli_breaker_spec *b, cli_err *e) {
  char label[96];
  char show[CLI_SHOW_SIZE];
  uint64_t n;
  snprintf(label, sizeof label, "%s %s", flag, key);
  if (strcmp(key, "rate") == 0)
    return cli_parse_percent(label, val, &b->rate, e);
  if (strcmp(key, "window") == 0) {
    size_t len = strlen(val);
    if (len > 0 && val[len - 1] >= '0' && val[len - 1] <= '9') {
      if (cli_parse_uint(label, val, 1, WINDOW_MAX, &n, e) != 0)
        return -EINVAL;
      b->time_window = false;
      b->window_count = (uint32_t)n;
      return 0;
    }
    if (cli_parse_duration(label, val, &n, e) != 0)
      return -EINVAL;
    if (n < TIME_WINDOW_MIN || n > TIME_WINDOW_MAX) {
      cli_err_set(e, "%s: '%s' is out of range (1s to 1h)", label,
                  cli_show(val, show));
      return -EINVAL;
    }
    b->time_window = true;
    b->window_ns = n;
    return 0;
  }
  if (strcmp(key, "min") == 0) {
    if (cli_parse_uint(label, val, 1, WINDOW_MAX, &n, e) != 0)
      return -EINVAL;
    b->min_calls = (uint32_t)n;
    return 0;
  }
  if (strcmp(key, "consecutive") == 0) {
    if (cli_parse_uint(label, val, 0, WINDOW_MAX, &n, e) != 0)
      return -EINVAL;
    b->consecutive = (uint32_t)n;
    return 0;
  }
  if (strcmp(key, "open") == 0) {
    if (strcmp(val, "never") == 0) {
      b->open_ns = CLI_BREAKER_OPEN_NEVER;
      return 0;
    }
    if (cli_parse_duration(label, val, &n, e) != 0)
      return -EINVAL;
    if (n == 0) {
      cli_err_set(e, "%s: '%s' must be longer than 0 (or never)", label,
                  cli_show(val, show));
      return -EINVAL;
    }
    b->open_ns = n;
    return 0;
  }
  if (strcmp(key, "probes") == 0) {
    if (cli_parse_uint(label, val, 1, 1000, &n, e) != 0)
      return -EINVAL;
    b->probes = (uint32_t)n;
    return 0;
  }
  if (strcmp(key, "mode") == 0) {
    if (strcmp(val, "wait") == 0)
      b->mode = CLI_BREAKER_WAIT;
    else if (strcmp(val, "fail") == 0)
      b->mode = CLI_BREAKER_FAIL;
    else {
      cli_err_set(e, "%s: invalid mode '%s' (expected wait or fail)", label,
                  cli_show(val, show));
      return -EINVAL;
    }
    return 0;
  }
  cli_err_set(e,
              "%s: unknown key '%s' (expected rate, window, min, "
              "consecutive, open, probes or mode)",
              flag, cli_show(key, show));
  return -EINVAL;
}

int cli_parse_breaker(const char *flag, const char *s, cli_breaker_spec *b,
                      cli_err *e) {
  cli_breaker_spec r = CLI_BREAKER_SPEC_INIT;
  char show[CLI_SHOW_SIZE];
  if (s == NULL || *s == '\0') {
    cli_err_set(e, "%s: empty spec (expected on, off or KEY=VALUE,...)", flag);
    return -EINVAL;
  }
  if (strcmp(s, "off") == 0) {
    *b = r;
    return 0;
  }
  r.enabled = true;
  if (strcmp(s, "on") == 0) {
    *b = r;
    return 0;
  }
  char buf[512];
  if (strlen(s) >= sizeof buf) {
    cli_err_set(e, "%s: spec '%s' is too long", flag, cli_show(s, show));
    return -EINVAL;
  }
  strcpy(buf, s);
  bool min_given = false;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok != NULL;
       tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '=');
    if (eq == NULL || eq == tok || eq[1] == '\0') {
      cli_err_set(e, "%s: '%s' is not KEY=VALUE", flag, cli_show(tok, show));
      return -EINVAL;
    }
    *eq = '\0';
    if (set_key(flag, tok, eq + 1, &r, e) != 0)
      return -EINVAL;
    if (strcmp(tok, "min") == 0)
      min_given = true;
  }
  if (!r.time_window && r.min_calls > r.window_count) {
    if (min_given) {
      cli_err_set(e, "%s: min=%u is larger than window=%u", flag,
                  (unsigned)r.min_calls, (unsigned)r.window_count);
      return -EINVAL;
    }
    r.min_calls = r.window_count;
  }
  *b = r;
  return 0;
}
