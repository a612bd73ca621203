/*
 * config_file.c - reads `--config FILE` (config_file.h). The whole file is
 * read first (it is small: at most 1 MiB), then split into lines in place;
 * each line is trimmed, split at its first "=", and handed to the caller,
 * which applies it exactly as the same option on the command line.
 */
#include "config_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ratchet/alloc.h"

#define CONFIG_MAX (1u << 20)

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t' || *s == '\r')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
    s[--n] = '\0';
  return s;
}

static int read_all(const char *path, char **out, size_t *len, cli_err *e) {
  char pshow[CLI_SHOW_PATH_SIZE];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    cli_err_set(e, "--config: cannot open '%s': %s", cli_show_path(path, pshow),
                strerror(err));
    return -err;
  }
  char *buf = ratchet_malloc(CONFIG_MAX + 1);
  if (buf == NULL) {
    close(fd);
    return -ENOMEM;
  }
  size_t n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, CONFIG_MAX + 1 - n);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      int err = errno;
      cli_err_set(e, "--config: cannot read '%s': %s",
                  cli_show_path(path, pshow), strerror(err));
      close(fd);
      ratchet_free(buf);
      return -err;
    }
    if (r == 0)
      break;
    n += (size_t)r;
    if (n > CONFIG_MAX) {
      cli_err_set(e, "--config: '%s' is larger than 1 MiB",
                  cli_show_path(path, pshow));
      close(fd);
      ratchet_free(buf);
      return -EFBIG;
    }
  }
  close(fd);
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

int cli_config_read(const char *path, cli_config_fn fn, void *ctx, cli_err *e) {
  char pshow[CLI_SHOW_PATH_SIZE];
  char *buf = NULL;
  size_t len = 0;
  int rc = read_all(path, &buf, &len, e);
  if (rc != 0)
    return rc;
  unsigned line = 0;
  char *p = buf;
  char *end = buf + len;
  while (rc == 0 && p < end) {
    line++;
    char *nl = memchr(p, '\n', (size_t)(end - p));
    char *next = nl != NULL ? nl + 1 : end;
    size_t llen = (size_t)((nl != NULL ? nl : end) - p);
    if (memchr(p, '\0', llen) != NULL) {
      cli_err_set(e, "%s:%u: the line contains a NUL byte",
                  cli_show_path(path, pshow), line);
      rc = -EINVAL;
      break;
    }
    p[llen] = '\0';
    char *s = trim(p);
    p = next;
    if (*s == '\0' || *s == '#')
      continue;
    char *eq = strchr(s, '=');
    char *value = NULL;
    if (eq != NULL) {
      *eq = '\0';
      value = trim(eq + 1);
      size_t vlen = strlen(value);
      if (value[0] == '"') {
        if (vlen < 2 || value[vlen - 1] != '"') {
          cli_err_set(e, "%s:%u: unterminated quote in the value",
                      cli_show_path(path, pshow), line);
          rc = -EINVAL;
          break;
        }
        value[vlen - 1] = '\0';
        value++;
      }
    }
    char *name = trim(s);
    if (strncmp(name, "--", 2) == 0)
      name += 2;
    if (*name == '\0') {
      cli_err_set(e, "%s:%u: expected 'option = value'",
                  cli_show_path(path, pshow), line);
      rc = -EINVAL;
      break;
    }
    rc = fn(ctx, name, value, line, e);
    if (rc != 0)
      cli_err_prefix(e, "%s:%u", cli_show_path(path, pshow), line);
  }
  ratchet_free(buf);
  return rc;
}

int cli_config_bool(const char *v) {
  static const char *const yes[] = {"true", "yes", "on", "1"};
  static const char *const no[] = {"false", "no", "off", "0"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(v, yes[i]) == 0)
      return 1;
    if (strcasecmp(v, no[i]) == 0)
      return 0;
  }
  return -1;
}
