/*
 * halt.c - parses `--halt` (halt.h) and evaluates its condition. The
 * grammar is GNU parallel's, so that a user's existing command lines keep
 * their meaning; anything else is refused with the expected forms.
 */
#include "halt.h"

#include <errno.h>
#include <string.h>

#include "duration.h"

static int bad(const char *flag, const char *s, const char *why, cli_err *e) {
  char show[CLI_SHOW_SIZE];
  cli_err_set(e,
              "%s: invalid value '%s': %s (expected never, or now|soon "
              "followed by ,fail=N, ,fail=P%%, ,success=N or ,done=N)",
              flag, cli_show(s, show), why);
  return -EINVAL;
}

int cli_parse_halt(const char *flag, const char *s, cli_halt *h, cli_err *e) {
  cli_halt r = CLI_HALT_INIT;
  if (s == NULL)
    return bad(flag, "", "empty", e);
  if (strcmp(s, "never") == 0 || strcmp(s, "0") == 0) {
    *h = r;
    return 0;
  }
  if (strcmp(s, "1") == 0 || strcmp(s, "2") == 0) {
    r.when = s[0] == '1' ? CLI_HALT_SOON : CLI_HALT_NOW;
    r.on = CLI_HALT_ON_FAIL;
    r.count = 1;
    *h = r;
    return 0;
  }
  const char *comma = strchr(s, ',');
  size_t wlen = comma != NULL ? (size_t)(comma - s) : strlen(s);
  if (wlen == 3 && memcmp(s, "now", 3) == 0)
    r.when = CLI_HALT_NOW;
  else if (wlen == 4 && memcmp(s, "soon", 4) == 0)
    r.when = CLI_HALT_SOON;
  else
    return bad(flag, s, "it must start with never, now or soon", e);
  if (comma == NULL)
    return bad(flag, s, "a condition is missing after now or soon", e);
  const char *cond = comma + 1;
  const char *eq = strchr(cond, '=');
  if (eq == NULL)
    return bad(flag, s, "the condition needs =N or =P%", e);
  size_t clen = (size_t)(eq - cond);
  if (clen == 4 && memcmp(cond, "fail", 4) == 0)
    r.on = CLI_HALT_ON_FAIL;
  else if (clen == 7 && memcmp(cond, "success", 7) == 0)
    r.on = CLI_HALT_ON_SUCCESS;
  else if (clen == 4 && memcmp(cond, "done", 4) == 0)
    r.on = CLI_HALT_ON_DONE;
  else
    return bad(flag, s, "the condition must be fail, success or done", e);
  const char *num = eq + 1;
  size_t nlen = strlen(num);
  cli_err sub;
  if (nlen > 0 && num[nlen - 1] == '%') {
    if (cli_parse_percent(flag, num, &r.percent, &sub) != 0)
      return bad(flag, s,
                 "the percentage must be more than 0% and at most 100%", e);
    r.is_percent = true;
  } else if (cli_parse_uint(flag, num, 1, UINT64_MAX, &r.count, &sub) != 0) {
    return bad(flag, s, "the count must be a whole number of at least 1", e);
  }
  *h = r;
  return 0;
}

bool cli_halt_triggered(const cli_halt *h, uint64_t failed, uint64_t succeeded,
                        uint64_t total) {
  if (h->when == CLI_HALT_NEVER)
    return false;
  uint64_t done = failed + succeeded;
  uint64_t n = h->on == CLI_HALT_ON_FAIL      ? failed
               : h->on == CLI_HALT_ON_SUCCESS ? succeeded
                                              : done;
  if (!h->is_percent)
    return n >= h->count;
  if (total > 0)
    return (double)n * 100.0 >= h->percent * (double)total;
  if (done < CLI_HALT_PERCENT_MIN_DONE)
    return false;
  return (double)n * 100.0 >= h->percent * (double)done;
}
