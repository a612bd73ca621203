/*
 * duration.c - durations, sizes, integers and percentages of the command
 * line (duration.h). Each number is parsed by hand rather than with strtod,
 * so that the locale cannot change the decimal separator, and so that every
 * overflow is caught: the integer part is accumulated with overflow checks
 * and only the fraction goes through a double.
 */
#include "duration.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define NS_PER_S UINT64_C(1000000000)

typedef struct unit {
  const char *name;
  uint64_t mult;
} unit;

static const unit duration_units[] = {
    {"ns", 1},
    {"us", 1000},
    {"ms", 1000000},
    {"s", NS_PER_S},
    {"m", 60 * NS_PER_S},
    {"h", 3600 * NS_PER_S},
    {"d", 86400 * NS_PER_S},
};

static const unit size_units[] = {
    {"", 1},
    {"b", 1},
    {"k", UINT64_C(1) << 10},
    {"kb", UINT64_C(1) << 10},
    {"kib", UINT64_C(1) << 10},
    {"m", UINT64_C(1) << 20},
    {"mb", UINT64_C(1) << 20},
    {"mib", UINT64_C(1) << 20},
    {"g", UINT64_C(1) << 30},
    {"gb", UINT64_C(1) << 30},
    {"gib", UINT64_C(1) << 30},
    {"t", UINT64_C(1) << 40},
    {"tb", UINT64_C(1) << 40},
    {"tib", UINT64_C(1) << 40},
};

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* Reads DIGITS[.DIGITS] at *p. Returns false if there is no digit or the
 * integer part overflows. */
static bool read_number(const char **p, uint64_t *ipart, double *frac) {
  const char *s = *p;
  uint64_t v = 0;
  bool any = false;
  while (is_digit(*s)) {
    if (__builtin_mul_overflow(v, 10, &v) ||
        __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
      return false;
    s++;
    any = true;
  }
  double f = 0.0, scale = 0.1;
  if (*s == '.') {
    s++;
    while (is_digit(*s)) {
      f += (*s - '0') * scale;
      scale /= 10.0;
      s++;
      any = true;
    }
  }
  if (!any)
    return false;
  *ipart = v;
  *frac = f;
  *p = s;
  return true;
}

/* v = ipart * mult + frac * mult, or false on overflow. */
static bool scale_value(uint64_t ipart, double frac, uint64_t mult,
                        uint64_t *v) {
  uint64_t a;
  if (__builtin_mul_overflow(ipart, mult, &a))
    return false;
  double fb = floor(frac * (double)mult + 0.5);
  if (fb >= 18446744073709551616.0)
    return false;
  return !__builtin_add_overflow(a, (uint64_t)fb, v);
}

int cli_parse_duration(const char *flag, const char *s, uint64_t *ns,
                       cli_err *e) {
  char show[CLI_SHOW_SIZE];
  const char *p = s;
  uint64_t total = 0;
  int groups = 0;
  if (s == NULL || *s == '\0')
    goto bad;
  while (*p != '\0') {
    uint64_t ip;
    double fr;
    if (!read_number(&p, &ip, &fr))
      goto bad;
    const char *u = p;
    while (*p != '\0' && !is_digit(*p) && *p != '.')
      p++;
    size_t ulen = (size_t)(p - u);
    uint64_t mult = 0;
    if (ulen == 0) {
      if (groups > 0 || *p != '\0')
        goto bad; /* "1m30" or similar: a unit is needed after the first */
      mult = NS_PER_S;
    } else {
      for (size_t i = 0; i < sizeof duration_units / sizeof *duration_units;
           i++)
        if (strlen(duration_units[i].name) == ulen &&
            memcmp(duration_units[i].name, u, ulen) == 0)
          mult = duration_units[i].mult;
      if (mult == 0)
        goto bad;
    }
    uint64_t v;
    if (!scale_value(ip, fr, mult, &v) ||
        __builtin_add_overflow(total, v, &total)) {
      cli_err_set(e, "%s: duration '%s' is too large", flag, cli_show(s, show));
      return -EINVAL;
    }
    groups++;
  }
  *ns = total;
  return 0;
bad:
  cli_err_set(e,
              "%s: invalid duration '%s' (expected a number of seconds or "
              "NUMBER UNIT with unit ns, us, ms, s, m, h or d, e.g. 250ms, "
              "2s, 1m30s)",
              flag, cli_show(s, show));
  return -EINVAL;
}

int cli_parse_size(const char *flag, const char *s, uint64_t *bytes,
                   cli_err *e) {
  char show[CLI_SHOW_SIZE];
  const char *p = s;
  uint64_t ip;
  double fr;
  if (s == NULL || !read_number(&p, &ip, &fr))
    goto bad;
  for (size_t i = 0; i < sizeof size_units / sizeof *size_units; i++) {
    if (strcasecmp(size_units[i].name, p) != 0)
      continue;
    uint64_t v;
    if (!scale_value(ip, fr, size_units[i].mult, &v)) {
      cli_err_set(e, "%s: size '%s' is too large", flag, cli_show(s, show));
      return -EINVAL;
    }
    *bytes = v;
    return 0;
  }
bad:
  cli_err_set(e,
              "%s: invalid size '%s' (expected a number of bytes with an "
              "optional unit K, M, G or T, e.g. 64M)",
              flag, cli_show(s, show));
  return -EINVAL;
}

int cli_parse_uint(const char *flag, const char *s, uint64_t min, uint64_t max,
                   uint64_t *out, cli_err *e) {
  char show[CLI_SHOW_SIZE];
  uint64_t v = 0;
  const char *p = s;
  bool overflow = false;
  if (s == NULL || *s == '\0')
    goto bad;
  for (; *p != '\0'; p++) {
    if (!is_digit(*p))
      goto bad;
    if (__builtin_mul_overflow(v, 10, &v) ||
        __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
      overflow = true;
  }
  if (overflow || v < min || v > max) {
    cli_err_set(e, "%s: '%s' is out of range (%llu to %llu)", flag,
                cli_show(s, show), (unsigned long long)min,
                (unsigned long long)max);
    return -EINVAL;
  }
  *out = v;
  return 0;
bad:
  cli_err_set(e, "%s: invalid number '%s' (expected a whole number)", flag,
              cli_show(s, show));
  return -EINVAL;
}

int cli_parse_percent(const char *flag, const char *s, double *pct,
                      cli_err *e) {
  char show[CLI_SHOW_SIZE];
  const char *p = s;
  uint64_t ip;
  double fr;
  if (s == NULL || !read_number(&p, &ip, &fr) ||
      (*p != '\0' && strcmp(p, "%") != 0))
    goto bad;
  double v = (double)ip + fr;
  if (!(v > 0.0 && v <= 100.0))
    goto bad;
  *pct = v;
  return 0;
bad:
  cli_err_set(e,
              "%s: invalid percentage '%s' (expected more than 0%% and "
              "at most 100%%, e.g. 50%%)",
              flag, cli_show(s, show));
  return -EINVAL;
}

char *cli_format_duration(uint64_t ns, char *buf) {
  static const unit order[] = {
      {"d", 86400 * NS_PER_S},
      {"h", 3600 * NS_PER_S},
      {"m", 60 * NS_PER_S},
      {"s", NS_PER_S},
      {"ms", 1000000},
      {"us", 1000},
      {"ns", 1},
  };
  size_t o = 0;
  buf[0] = '\0';
  if (ns == 0) {
    strcpy(buf, "0s");
    return buf;
  }
  for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
    uint64_t q = ns / order[i].mult;
    if (q == 0)
      continue;
    o += (size_t)snprintf(buf + o, 64 - o, "%llu%s", (unsigned long long)q,
                          order[i].name);
    ns -= q * order[i].mult;
  }
  return buf;
}
