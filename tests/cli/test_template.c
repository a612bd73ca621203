/*
 * test_template.c - placeholders, shell quoting and the shell-or-not rule
 * of `ratchet run`'s command (placeholder.c, command.c). The quoting tests
 * run the quoted words through /bin/sh to check that every input comes
 * back byte for byte.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "command.h"
#include "placeholder.h"
#include "ratchet/alloc.h"
#include "testutil.h"

static char *expand(const char *tmpl, const char *in, uint64_t seq,
                    bool quote) {
  cli_sbuf b = CLI_SBUF_INIT;
  assert_int_equal(cli_expand(&b, tmpl, in, seq, quote), 0);
  return cli_sbuf_take(&b);
}

static void check(const char *tmpl, const char *in, const char *want) {
  char *got = expand(tmpl, in, 7, false);
  if (strcmp(got, want) != 0)
    fail_msg("%s on '%s': got '%s', want '%s'", tmpl, in, got, want);
  ratchet_free(got);
}

static void placeholders(void **state) {
  (void)state;
  const char *in = "dir/sub/file.tar.gz";
  check("{}", in, "dir/sub/file.tar.gz");
  check("{.}", in, "dir/sub/file.tar");
  check("{/}", in, "file.tar.gz");
  check("{//}", in, "dir/sub");
  check("{/.}", in, "file.tar");
  check("{#}", in, "7");
  check("x{}y{#}z", in, "xdir/sub/file.tar.gzy7z");
  check("{//}", "file", ".");
  check("{//}", "/file", "/");
  check("{.}", "dir.d/file", "dir.d/file");
  check("{.}", ".bashrc", ".bashrc");
  check("{/.}", "a/.hidden", ".hidden");
  check("{/}", "a/b/", "");
  check("{}", "", "");
  /* Not placeholders: left alone. */
  check("{print $1}", in, "{print $1}");
  check("{x}{", in, "{x}{");
  check("{{}}", "v", "{v}");
  assert_true(cli_has_placeholder("a{/.}b"));
  assert_false(cli_has_placeholder("awk '{print}'"));
  assert_false(cli_has_placeholder("{ }"));
}

/* Runs `printf %s WORD` through /bin/sh and returns what it printed. */
static char *sh_roundtrip(const char *word) {
  cli_sbuf cmd = CLI_SBUF_INIT;
  assert_int_equal(cli_sbuf_adds(&cmd, "printf %s "), 0);
  assert_int_equal(cli_shell_quote(&cmd, word), 0);
  char *argv[] = {(char *)"/bin/sh", (char *)"-c", cmd.data, NULL};
  int p[2];
  assert_int_equal(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(p[1], 1);
    close(p[0]);
    execv(argv[0], argv);
    _exit(127);
  }
  close(p[1]);
  cli_sbuf out = CLI_SBUF_INIT;
  char buf[256];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0)
    assert_int_equal(cli_sbuf_add(&out, buf, (size_t)n), 0);
  close(p[0]);
  int st;
  waitpid(pid, &st, 0);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  cli_sbuf_free(&cmd);
  char *r = cli_sbuf_take(&out);
  return r;
}

static void shell_quoting(void **state) {
  (void)state;
  static const char *const words[] = {
      "plain",     "with space", "it's",
      "'",         "''",         "$(touch /tmp/pwned)",
      "`id`",      "a;b|c&d",    "new\nline",
      "tab\there", "*",          "~",
      "-n",        "\\",         "\"dq\"",
      "$HOME",     "a=b",        "!",
      "{}",        "#x",
  };
  for (size_t i = 0; i < TU_ARRAY_LEN(words); i++) {
    char *got = sh_roundtrip(words[i]);
    assert_string_equal(got, words[i]);
    ratchet_free(got);
  }
  cli_sbuf b = CLI_SBUF_INIT;
  assert_int_equal(cli_shell_quote(&b, ""), 0);
  assert_string_equal(cli_sbuf_str(&b), "''");
  cli_sbuf_reset(&b);
  assert_int_equal(cli_shell_quote(&b, "a/b-c_d.e"), 0);
  assert_string_equal(cli_sbuf_str(&b), "a/b-c_d.e");
  cli_sbuf_reset(&b);
  assert_int_equal(cli_shell_quote(&b, "it's"), 0);
  assert_string_equal(cli_sbuf_str(&b), "'it'\\''s'");
  cli_sbuf_free(&b);
}

static void needs_shell(void **state) {
  (void)state;
  assert_false(cli_needs_shell("gzip"));
  assert_false(cli_needs_shell("/usr/bin/true"));
  assert_false(cli_needs_shell("convert{}"));
  assert_true(cli_needs_shell("gzip -9"));
  assert_true(cli_needs_shell("a|b"));
  assert_true(cli_needs_shell("echo $HOME"));
  assert_true(cli_needs_shell("x>y"));
  assert_true(cli_needs_shell("ls *.c"));
}

static void exec_mode(void **state) {
  (void)state;
  char *tokens[] = {(char *)"convert", (char *)"{}", (char *)"{.}.png"};
  cli_command_template t;
  cli_err e = {{0}};
  assert_int_equal(cli_command_template_init(&t, tokens, 3, false, &e), 0);
  assert_false(t.shell);
  assert_true(t.has_placeholder);
  cli_command c;
  assert_int_equal(cli_command_expand(&t, "my pic.jpg", 1, &c), 0);
  assert_false(c.shell);
  assert_int_equal(c.argc, 3);
  assert_string_equal(c.argv[0], "convert");
  assert_string_equal(c.argv[1], "my pic.jpg");
  assert_string_equal(c.argv[2], "my pic.png");
  assert_null(c.argv[3]);
  assert_string_equal(c.display, "convert 'my pic.jpg' 'my pic.png'");
  cli_command_free(&c);

  /* No placeholder: the input is appended, verbatim, as one argument. */
  char *t2[] = {(char *)"wc", (char *)"-c"};
  assert_int_equal(cli_command_template_init(&t, t2, 2, false, &e), 0);
  assert_false(t.has_placeholder);
  assert_int_equal(cli_command_expand(&t, "$(reboot); x", 2, &c), 0);
  assert_int_equal(c.argc, 3);
  assert_string_equal(c.argv[2], "$(reboot); x");
  cli_command_free(&c);
}

static char *expand_v(const char *tmpl, const cli_values *v, bool quote) {
  cli_sbuf b = CLI_SBUF_INIT;
  assert_int_equal(cli_expand_values(&b, tmpl, v, 3, quote), 0);
  return cli_sbuf_take(&b);
}

/* {N} and its slices take the Nth value; {1} of a single value is {}; a
 * missing value is empty; what is not a placeholder stays text. */
static void positional(void **state) {
  (void)state;
  const char *f[] = {"dir/a.tar.gz", "b c", "x"};
  cli_values v = {"dir/a.tar.gz b c x", f, 3};
  static const struct {
    const char *tmpl, *want;
  } cases[] = {
      {"{1}", "dir/a.tar.gz"},
      {"{2}", "b c"},
      {"{3}", "x"},
      {"{4}|{9999}", "|"},
      {"{1.}", "dir/a.tar"},
      {"{1/}", "a.tar.gz"},
      {"{1//}", "dir"},
      {"{1/.}", "a.tar"},
      {"{}", "dir/a.tar.gz b c x"},
      {"{#}-{2}", "3-b c"},
      {"{0}", "{0}"},
      {"{10000}", "{10000}"},
      {"{1x}", "{1x}"},
      {"{-1}", "{-1}"},
      {"{12", "{12"},
      {"{3}{2}{1}", "xb cdir/a.tar.gz"},
      /* {} and its slices: every value, each sliced on its own. */
      {"{.}", "dir/a.tar b c x"},
      {"{/}", "a.tar.gz b c x"},
      /* The shell's own braces after '$' stay as they are. */
      {"${1} ${#} ${}", "${1} ${#} ${}"},
      {"$${2}", "$${2}"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *got = expand_v(cases[i].tmpl, &v, false);
    if (strcmp(got, cases[i].want) != 0)
      fail_msg("%s: got '%s', want '%s'", cases[i].tmpl, got, cases[i].want);
    ratchet_free(got);
  }
  char *q = expand_v("echo {2}", &v, true);
  assert_string_equal(q, "echo 'b c'");
  ratchet_free(q);
  q = expand_v("touch {}", &v, true); /* each value quoted apart */
  assert_string_equal(q, "touch dir/a.tar.gz 'b c' x");
  ratchet_free(q);
  assert_false(cli_has_placeholder("sh -c 'echo ${1}'"));
  assert_true(cli_is_value_placeholder("{/.}"));
  assert_false(cli_is_value_placeholder("{1}"));
  assert_false(cli_is_value_placeholder("{#}"));
  assert_false(cli_is_value_placeholder("x{}"));
  cli_values one = cli_values_one("solo.txt");
  q = expand_v("{1}/{1.}/{2}", &one, false);
  assert_string_equal(q, "solo.txt/solo/");
  ratchet_free(q);
  assert_true(cli_has_placeholder("x{12}y"));
  assert_false(cli_has_placeholder("{0} {x} {12"));

  /* Without a shell an argument that is exactly {} becomes one argument
   * per value; one with more text around it, one argument. */
  char *tv[] = {(char *)"touch", (char *)"{}", (char *)"-{1}-{}"};
  cli_command_template tt;
  cli_err te = {{0}};
  assert_int_equal(cli_command_template_init(&tt, tv, 3, false, &te), 0);
  cli_command tc;
  assert_int_equal(cli_command_expand_values(&tt, &v, 1, &tc), 0);
  assert_int_equal(tc.argc, 5);
  assert_string_equal(tc.argv[1], "dir/a.tar.gz");
  assert_string_equal(tc.argv[2], "b c");
  assert_string_equal(tc.argv[3], "x");
  assert_string_equal(tc.argv[4], "-dir/a.tar.gz-dir/a.tar.gz b c x");
  assert_null(tc.argv[5]);
  cli_command_free(&tc);

  /* Without a placeholder each value is an argument of its own. */
  char *tokens[] = {(char *)"echo"};
  cli_command_template t;
  cli_err e = {{0}};
  assert_int_equal(cli_command_template_init(&t, tokens, 1, false, &e), 0);
  cli_command c;
  assert_int_equal(cli_command_expand_values(&t, &v, 1, &c), 0);
  assert_int_equal(c.argc, 4);
  assert_string_equal(c.argv[2], "b c");
  assert_string_equal(c.display, "echo dir/a.tar.gz 'b c' x");
  cli_command_free(&c);
  char *sh[] = {(char *)"echo", (char *)">"};
  assert_int_equal(cli_command_template_init(&t, sh, 2, true, &e), 0);
  assert_int_equal(cli_command_expand_values(&t, &v, 1, &c), 0);
  assert_string_equal(c.argv[0], "echo > dir/a.tar.gz 'b c' x");
  cli_command_free(&c);
}

static void shell_mode(void **state) {
  (void)state;
  char *tokens[] = {(char *)"cat {} | wc -l > {/.}.count"};
  cli_command_template t;
  cli_err e = {{0}};
  assert_int_equal(cli_command_template_init(&t, tokens, 1, false, &e), 0);
  assert_true(t.shell);
  cli_command c;
  assert_int_equal(cli_command_expand(&t, "d/it's;rm -rf x.txt", 1, &c), 0);
  assert_true(c.shell);
  assert_int_equal(c.argc, 1);
  assert_string_equal(c.argv[0], "cat 'd/it'\\''s;rm -rf x.txt' | wc -l > "
                                 "'it'\\''s;rm -rf x'.count");
  assert_string_equal(c.display, c.argv[0]);
  cli_command_free(&c);

  /* --shell with several tokens: joined; the input appended, quoted. */
  char *t2[] = {(char *)"echo", (char *)"hi"};
  assert_int_equal(cli_command_template_init(&t, t2, 2, true, &e), 0);
  assert_true(t.shell);
  assert_int_equal(cli_command_expand(&t, "a b", 1, &c), 0);
  assert_string_equal(c.argv[0], "echo hi 'a b'");
  cli_command_free(&c);

  /* A single argument without shell syntax runs directly. */
  char *t3[] = {(char *)"true"};
  assert_int_equal(cli_command_template_init(&t, t3, 1, false, &e), 0);
  assert_false(t.shell);
}

static void template_errors(void **state) {
  (void)state;
  cli_command_template t;
  cli_err e = {{0}};
  assert_int_equal(cli_command_template_init(&t, NULL, 0, false, &e), -EINVAL);
  assert_msg_has(e.msg, "no COMMAND given");
  char *empty[] = {(char *)""};
  assert_int_equal(cli_command_template_init(&t, empty, 1, false, &e), -EINVAL);
  assert_msg_has(e.msg, "empty string");
}

static void expand_oom(void **state) {
  (void)state;
  char *tokens[] = {(char *)"cmd", (char *)"{}", (char *)"{.}"};
  cli_command_template t;
  cli_err e = {{0}};
  assert_int_equal(cli_command_template_init(&t, tokens, 3, false, &e), 0);
  for (size_t fail = 0; fail < 64; fail++) {
    cli_command c;
    tu_alloc_install(fail);
    int rc = cli_command_expand(&t, "some input.txt", 3, &c);
    long live = tu_alloc_live();
    if (rc == 0)
      cli_command_free(&c);
    tu_alloc_uninstall();
    if (rc == 0)
      break;
    assert_int_equal(rc, -ENOMEM);
    assert_int_equal(live, 0);
  }
}

int test_template(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(placeholders), cmocka_unit_test(shell_quoting),
      cmocka_unit_test(needs_shell),  cmocka_unit_test(exec_mode),
      cmocka_unit_test(shell_mode),   cmocka_unit_test(template_errors),
      cmocka_unit_test(expand_oom),   cmocka_unit_test(positional),
  };
  return cmocka_run_group_tests_name("template", tests, NULL, NULL);
}
