/*
 * test_config.c - the --config file format (config_file.c): comments,
 * blanks, quotes, flags without a value, and errors that name FILE:LINE.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config_file.h"
#include "testutil.h"

typedef struct seen {
  char lines[16][128];
  int n;
  const char *refuse; /* a name the callback refuses */
} seen;

static int collect(void *ctx, const char *name, const char *value,
                   unsigned line, cli_err *e) {
  seen *s = ctx;
  if (s->refuse != NULL && strcmp(name, s->refuse) == 0) {
    cli_err_set(e, "unknown option '%s'", name);
    return -EINVAL;
  }
  snprintf(s->lines[s->n++ & 15], 128, "%u:%s=%s", line, name,
           value != NULL ? value : "(none)");
  return 0;
}

static void format(void **state) {
  (void)state;
  const char text[] = "# a comment\n"
                      "\n"
                      "  jobs = 4  \n"
                      "--timeout=2m\n"
                      "keep-order\n"
                      "\t# indented comment\n"
                      "joblog = \"  spaced.tsv \"\n"
                      "tag = false\r\n"
                      "halt = now,fail=1 # not a comment\n"
                      "empty =\n"
                      "last = x";
  const char *path = tu_write_temp(1, text, sizeof text - 1);
  seen s = {.n = 0};
  cli_err e = {{0}};
  assert_int_equal(cli_config_read(path, collect, &s, &e), 0);
  unlink(path);
  assert_int_equal(s.n, 8);
  assert_string_equal(s.lines[0], "3:jobs=4");
  assert_string_equal(s.lines[1], "4:timeout=2m");
  assert_string_equal(s.lines[2], "5:keep-order=(none)");
  assert_string_equal(s.lines[3], "7:joblog=  spaced.tsv ");
  assert_string_equal(s.lines[4], "8:tag=false");
  assert_string_equal(s.lines[5], "9:halt=now,fail=1 # not a comment");
  assert_string_equal(s.lines[6], "10:empty=");
  assert_string_equal(s.lines[7], "11:last=x");
}

static void errors_name_line(void **state) {
  (void)state;
  char want[256];
  cli_err e = {{0}};
  seen s = {.n = 0};
  const char t1[] = "jobs = 2\n= 3\n";
  const char *p = tu_write_temp(1, t1, sizeof t1 - 1);
  assert_int_equal(cli_config_read(p, collect, &s, &e), -EINVAL);
  snprintf(want, sizeof want, "%s:2: expected 'option = value'", p);
  assert_msg_has(e.msg, want);
  unlink(p);

  const char t2[] = "a = 1\nb = 2\nc = \"open\n";
  p = tu_write_temp(1, t2, sizeof t2 - 1);
  assert_int_equal(cli_config_read(p, collect, &s, &e), -EINVAL);
  snprintf(want, sizeof want, "%s:3: unterminated quote", p);
  assert_msg_has(e.msg, want);
  unlink(p);

  const char t3[] = "a = 1\n\nbogus = 2\n";
  p = tu_write_temp(1, t3, sizeof t3 - 1);
  s.refuse = "bogus";
  assert_int_equal(cli_config_read(p, collect, &s, &e), -EINVAL);
  snprintf(want, sizeof want, "%s:3: unknown option 'bogus'", p);
  assert_msg_has(e.msg, want);
  unlink(p);

  const char t4[] = "a = 1\nb\0 = 2\n";
  p = tu_write_temp(1, t4, sizeof t4 - 1);
  assert_int_equal(cli_config_read(p, collect, &s, &e), -EINVAL);
  snprintf(want, sizeof want, "%s:2: the line contains a NUL byte", p);
  assert_msg_has(e.msg, want);
  unlink(p);

  assert_int_equal(cli_config_read("/nonexistent/r.conf", collect, &s, &e),
                   -ENOENT);
  assert_msg_has(e.msg, "--config: cannot open '/nonexistent/r.conf'");
}

static void booleans(void **state) {
  (void)state;
  assert_int_equal(cli_config_bool("true"), 1);
  assert_int_equal(cli_config_bool("YES"), 1);
  assert_int_equal(cli_config_bool("on"), 1);
  assert_int_equal(cli_config_bool("1"), 1);
  assert_int_equal(cli_config_bool("false"), 0);
  assert_int_equal(cli_config_bool("Off"), 0);
  assert_int_equal(cli_config_bool("0"), 0);
  assert_int_equal(cli_config_bool("maybe"), -1);
  assert_int_equal(cli_config_bool(""), -1);
}

int test_config(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(format),
      cmocka_unit_test(errors_name_line),
      cmocka_unit_test(booleans),
  };
  return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
