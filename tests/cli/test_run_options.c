/*
 * test_run_options.c - the whole command line of `ratchet run`
 * (run_options.c): defaults, every option, the config file and its
 * precedence, operands and :::, and one refusal per rule, each message
 * naming the option and the value.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "run_options.h"
#include "testutil.h"

#define S UINT64_C(1000000000)

/* Parses a NULL-terminated list of words after "ratchet run". */
static int parse(cli_run_options *o, cli_err *e, const char *const *words) {
  char *argv[64];
  int argc = 0;
  argv[argc++] = (char *)"ratchet";
  argv[argc++] = (char *)"run";
  for (; *words != NULL; words++)
    argv[argc++] = (char *)*words;
  argv[argc] = NULL;
  cli_run_options_init(o);
  return cli_run_options_parse(o, argc, argv, 2, e);
}

#define PARSE(o, e, ...)                                                       \
  parse((o), (e), (const char *const[]){__VA_ARGS__, NULL})

static void defaults(void **state) {
  (void)state;
  cli_run_options o;
  cli_err e = {{0}};
  assert_int_equal(PARSE(&o, &e, "gzip"), 0);
  assert_int_equal(o.jobs, (uint32_t)sysconf(_SC_NPROCESSORS_ONLN));
  assert_int_equal(o.retries, 0);
  assert_int_equal(o.backoff, CLI_BACKOFF_EXPONENTIAL);
  assert_int_equal(o.backoff_base_ns, S / 10);
  assert_int_equal(o.backoff_max_ns, 30 * S);
  assert_int_equal(o.jitter.kind, CLI_JITTER_FULL);
  assert_int_equal(o.timeout_ns, 0);
  assert_int_equal(o.kill_grace_ns, 2 * S);
  assert_false(o.breaker.enabled);
  assert_int_equal(o.halt.when, CLI_HALT_NEVER);
  assert_false(o.cache);
  assert_null(o.joblog);
  assert_int_equal(o.progress, CLI_PROGRESS_AUTO);
  assert_int_equal(o.input, CLI_INPUT_STDIN);
  assert_int_equal(o.output_buffer, 16u << 20);
  assert_int_equal(o.n_command, 1);
  assert_string_equal(o.command[0], "gzip");
  assert_false(o.tmpl.shell);
  cli_run_options_free(&o);
}

static void every_option(void **state) {
  (void)state;
  cli_run_options o;
  cli_err e = {{0}};
  int rc = PARSE(&o, &e, "-j", "3", "--retries=4", "--backoff", "linear",
                 "--backoff-base", "250ms", "--backoff-max", "1m", "--jitter",
                 "equal", "--timeout", "2s", "--kill-grace", "0", "--breaker",
                 "rate=30%", "--halt", "soon,fail=2", "--cache=/tmp/rc",
                 "--cache-env", "CC", "--cache-env", "CFLAGS", "--cache-env",
                 "CC", "--cache-ttl", "1h", "--joblog", "log.tsv",
                 "--resume-failed", "--dead-letter", "dead.jsonl", "--json",
                 "--quiet", "-k", "--shell", "-0", "-a", "in.txt",
                 "--output-buffer", "1M", "--dry-run", "cmd", "-x", "{}");
  if (rc != 0)
    fail_msg("%s", e.msg);
  assert_int_equal(o.jobs, 3);
  assert_int_equal(o.retries, 4);
  assert_int_equal(o.backoff, CLI_BACKOFF_LINEAR);
  assert_int_equal(o.backoff_base_ns, S / 4);
  assert_int_equal(o.backoff_max_ns, 60 * S);
  assert_int_equal(o.jitter.kind, CLI_JITTER_EQUAL);
  assert_int_equal(o.timeout_ns, 2 * S);
  assert_int_equal(o.kill_grace_ns, 0);
  assert_true(o.breaker.enabled);
  assert_true(o.breaker.rate == 30.0);
  assert_int_equal(o.halt.when, CLI_HALT_SOON);
  assert_int_equal(o.halt.count, 2);
  assert_true(o.cache);
  assert_string_equal(o.cache_dir, "/tmp/rc");
  assert_int_equal(o.n_cache_env, 2);
  assert_string_equal(o.cache_env[1], "CFLAGS");
  assert_int_equal(o.cache_ttl_ns, 3600 * S);
  assert_string_equal(o.joblog, "log.tsv");
  assert_true(o.resume_failed);
  assert_string_equal(o.dead_letter, "dead.jsonl");
  assert_true(o.json);
  assert_true(o.quiet);
  assert_int_equal(o.progress, CLI_PROGRESS_OFF);
  assert_true(o.keep_order);
  assert_true(o.shell);
  assert_true(o.null_sep);
  assert_int_equal(o.input, CLI_INPUT_FILE);
  assert_string_equal(o.arg_file, "in.txt");
  assert_int_equal(o.output_buffer, 1u << 20);
  assert_true(o.dry_run);
  /* The command keeps its own flags. */
  assert_int_equal(o.n_command, 3);
  assert_string_equal(o.command[1], "-x");
  assert_true(o.tmpl.shell);
  cli_run_options_free(&o);

  assert_int_equal(PARSE(&o, &e, "-k0j2", "--tag", "--progress", "--cache",
                         "--plugin", "p.so", "--kind", "upper", ":::", "a",
                         "b c"),
                   0);
  assert_true(o.keep_order);
  assert_true(o.null_sep);
  assert_int_equal(o.jobs, 2);
  assert_true(o.tag);
  assert_int_equal(o.progress, CLI_PROGRESS_ON);
  assert_true(o.cache);
  assert_null(o.cache_dir);
  assert_string_equal(o.plugin, "p.so");
  assert_string_equal(o.kind, "upper");
  assert_int_equal(o.n_command, 0);
  assert_int_equal(o.input, CLI_INPUT_LIST);
  assert_int_equal(o.n_inputs, 2);
  assert_string_equal(o.inputs[1], "b c");
  assert_int_equal(o.n_groups, 1);
  cli_run_options_free(&o);

  /* Several lists, one linked; --colsep with stdin, "\t" a tab. */
  assert_int_equal(PARSE(&o, &e, "echo", "{1}", ":::", "a", "b", ":::", "1",
                         ":::+", "x", "y", "z"),
                   0);
  assert_int_equal(o.n_inputs, 6);
  assert_int_equal(o.n_groups, 3);
  assert_int_equal(o.groups[0].first, 0);
  assert_int_equal(o.groups[0].n, 2);
  assert_false(o.groups[0].linked);
  assert_int_equal(o.groups[1].first, 2);
  assert_int_equal(o.groups[1].n, 1);
  assert_int_equal(o.groups[2].first, 3);
  assert_int_equal(o.groups[2].n, 3);
  assert_true(o.groups[2].linked);
  cli_run_options_free(&o);
  assert_int_equal(PARSE(&o, &e, "--colsep", "\\t", "echo"), 0);
  assert_string_equal(o.colsep, "\t");
  cli_run_options_free(&o);
}

static void jobs_forms(void **state) {
  (void)state;
  cli_run_options o;
  cli_err e = {{0}};
  uint32_t cpus = (uint32_t)sysconf(_SC_NPROCESSORS_ONLN);
  assert_int_equal(PARSE(&o, &e, "-j", "200%", "x"), 0);
  assert_int_equal(o.jobs, 2 * cpus);
  cli_run_options_free(&o);
  assert_int_equal(PARSE(&o, &e, "--jobs=+2", "x"), 0);
  assert_int_equal(o.jobs, cpus + 2);
  cli_run_options_free(&o);
  assert_int_equal(PARSE(&o, &e, "-j", "-100", "x"), 0);
  assert_int_equal(o.jobs, 1);
  cli_run_options_free(&o);
  assert_int_equal(PARSE(&o, &e, "-j1", "x"), 0);
  assert_int_equal(o.jobs, 1);
  cli_run_options_free(&o);
}

typedef struct bad_case {
  const char *const words[8];
  const char *needle;
} bad_case;

static void refusals(void **state) {
  (void)state;
  static const bad_case cases[] = {
      {{"--bogus", "x"}, "unknown option '--bogus'"},
      {{"-Z", "x"}, "unknown option '-Z'"},
      {{"--jobs"}, "--jobs needs a value (N)"},
      {{"-j"}, "-j needs a value (N)"},
      {{"-j", "0", "x"}, "-j: invalid value '0'"},
      {{"-j", "many", "x"}, "-j: invalid value 'many'"},
      {{"--jobs=5000", "x"}, "--jobs: invalid value '5000'"},
      {{"--retries", "-1", "x"}, "--retries: invalid number '-1'"},
      {{"--retries", "1001", "x"}, "--retries: '1001' is out of range"},
      {{"--timeout", "5x", "x"}, "--timeout: invalid duration '5x'"},
      {{"--kill-grace", "soon", "x"}, "--kill-grace: invalid duration"},
      {{"--backoff", "fib", "x"}, "--backoff: invalid backoff 'fib'"},
      {{"--backoff-base", "0", "x"}, "--backoff-base: '0' must be longer"},
      {{"--backoff-base", "2s", "--backoff-max", "1s", "x"},
       "--backoff-max (1s) is shorter than --backoff-base (2s)"},
      {{"--jitter", "lots", "x"}, "--jitter: invalid jitter 'lots'"},
      {{"--backoff", "decorrelated", "--jitter", "none", "x"},
       "--jitter cannot be used with --backoff decorrelated"},
      {{"--breaker", "rate=200%", "x"}, "--breaker rate"},
      {{"--halt", "sometimes", "x"}, "--halt: invalid value 'sometimes'"},
      {{"--cache-env", "1X", "--cache", "x"}, "--cache-env: '1X' is not"},
      {{"--cache-env", "CC", "x"}, "--cache-env needs --cache"},
      {{"--cache-ttl", "1h", "x"}, "--cache-ttl needs --cache"},
      {{"--cache", "--cache-ttl", "0", "x"}, "--cache-ttl: '0' must be"},
      {{"--cache=", "x"}, "--cache: the path is empty"},
      {{"--resume", "x"}, "--resume needs --joblog FILE"},
      {{"--resume-failed", "x"}, "--resume-failed needs --joblog FILE"},
      {{"--json=yes", "x"}, "--json takes no value (got 'yes')"},
      {{"--progress", "--quiet", "x"}, "--progress and --quiet contradict"},
      {{"--json", "--tag", "x"}, "--tag cannot be used with --json"},
      {{"--plugin", "p.so", "x"}, "--plugin needs --kind"},
      {{"--kind", "k", "x"}, "--kind needs --plugin"},
      {{"--plugin", "p.so", "--kind", "k", "cmd"}, "unexpected COMMAND 'cmd'"},
      {{"--plugin", "p.so", "--kind", "k", "--shell", ":::", "a"},
       "--shell cannot be used with --kind"},
      {{"--kind="}, "--kind: the kind is empty"},
      {{":::", "a"}, "no COMMAND given"},
      {{"--dry-run"}, "no COMMAND given"},
      {{"", "a"}, "the COMMAND is an empty string"},
      {{"echo", ":::+", "a"}, "':::+' links its list to the ::: list"},
      {{"--plugin", "p.so", "--kind", "k", ":::", "a", ":::", "b"},
       "several ::: lists split inputs"},
      {{"--plugin", "p.so", "--kind", "k", "--colsep", ","},
       "--colsep splits inputs"},
      {{"--colsep", "", "echo"}, "--colsep: the separator is empty"},
      {{"echo", "::::", "f"}, "'::::' is not supported"},
      {{"-a", "f", "echo", ":::", "x"}, "-a/--arg-file and ::: both"},
      {{"-a", "f", "-a", "g", "x"}, "-a: given twice ('g')"},
      {{"--output-buffer", "1", "x"}, "--output-buffer: '1' is out of range"},
      {{"--output-buffer", "lots", "x"}, "--output-buffer: invalid size"},
      {{"--config", "/nonexistent/ratchet.conf", "x"},
       "--config: cannot open '/nonexistent/ratchet.conf'"},
  };
  for (size_t i = 0; i < TU_ARRAY_LEN(cases); i++) {
    cli_run_options o;
    cli_err e = {{0}};
    int rc = parse(&o, &e, cases[i].words);
    if (rc == 0)
      fail_msg("case %zu (%s...) accepted", i, cases[i].words[0]);
    if (strstr(e.msg, cases[i].needle) == NULL)
      fail_msg("case %zu: message '%s' lacks '%s'", i, e.msg, cases[i].needle);
    cli_run_options_free(&o);
  }
}

static void config_file(void **state) {
  (void)state;
  const char text[] = "# ratchet run defaults\n"
                      "jobs = 7\n"
                      "retries = 2\n"
                      "keep-order\n"
                      "tag = yes\n"
                      "timeout = 1m\n"
                      "cache = /tmp/c\n"
                      "cache-env = HOME\n";
  const char *path = tu_write_temp(3, text, sizeof text - 1);
  cli_run_options o;
  cli_err e = {{0}};
  /* The command line wins over the file, wherever --config is. */
  int rc = PARSE(&o, &e, "--retries", "5", "--config", path, "echo");
  if (rc != 0)
    fail_msg("%s", e.msg);
  assert_int_equal(o.jobs, 7);
  assert_int_equal(o.retries, 5);
  assert_true(o.keep_order);
  assert_true(o.tag);
  assert_int_equal(o.timeout_ns, 60 * S);
  assert_string_equal(o.cache_dir, "/tmp/c");
  assert_int_equal(o.n_cache_env, 1);
  assert_string_equal(o.config, path);
  cli_run_options_free(&o);
  unlink(path);

  static const struct {
    const char *text;
    const char *needle; /* after "PATH:" */
  } bad[] = {
      {"jobs = 2\ntimeout = 5x\n", "2: --timeout: invalid duration '5x'"},
      {"colour = red\n", "1: unknown option 'colour'"},
      {"help\n", "1: unknown option 'help'"},
      {"\n\nconfig = other.conf\n", "3: --config: not allowed inside"},
      {"keep-order = maybe\n", "1: --keep-order: expected true or false, "
                               "got 'maybe'"},
      {"jobs\n", "1: --jobs needs a value (N)"},
      {"halt = now,fail=1\n# ok\nbreaker = rate=50%,min=0\n",
       "3: --breaker min"},
  };
  for (size_t i = 0; i < TU_ARRAY_LEN(bad); i++) {
    path = tu_write_temp(3, bad[i].text, strlen(bad[i].text));
    rc = PARSE(&o, &e, "--config", path, "echo");
    assert_int_not_equal(rc, 0);
    char want[256];
    snprintf(want, sizeof want, "%s:%s", path, bad[i].needle);
    if (strstr(e.msg, want) == NULL)
      fail_msg("config %zu: '%s' lacks '%s'", i, e.msg, want);
    cli_run_options_free(&o);
    unlink(path);
  }
}

static void help_and_separator(void **state) {
  (void)state;
  cli_run_options o;
  cli_err e = {{0}};
  /* --help wins over everything, as in GNU tools. */
  assert_int_equal(PARSE(&o, &e, "--timeout", "bad", "--help"), 0);
  assert_true(o.help);
  cli_run_options_free(&o);
  assert_int_equal(PARSE(&o, &e, "-j2", "--help", "--bogus"), 0);
  assert_true(o.help);
  cli_run_options_free(&o);
  /* "--" ends the options: the command may start with a dash. */
  assert_int_equal(PARSE(&o, &e, "-k", "--", "-weird", "{}"), 0);
  assert_string_equal(o.command[0], "-weird");
  cli_run_options_free(&o);
}

int test_run_options(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(defaults),    cmocka_unit_test(every_option),
      cmocka_unit_test(jobs_forms),  cmocka_unit_test(refusals),
      cmocka_unit_test(config_file), cmocka_unit_test(help_and_separator),
  };
  return cmocka_run_group_tests_name("run_options", tests, NULL, NULL);
}
