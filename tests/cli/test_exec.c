/*
 * test_exec.c - the exec engine of `ratchet worker` (exec.c) on real
 * processes: output captured from both streams at once without deadlock,
 * spilling to files, stdin feeding (also to a command that stops reading),
 * exit codes and signals, environment and working directory, and the
 * promise that a time limit, a cancellation or a command exiting early
 * leaves no process of its group behind.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"
#include "ratchet/alloc.h"
#include "testutil.h"

#define MIB (1u << 20)

static int setup(void **state) {
  (void)state;
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

static uint64_t ms_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* glibc reports a failed exec from posix_spawn through memory shared with
 * the vfork child; valgrind runs the child as a plain fork, and then only
 * glibc's exit status 127 tells. Either is a correct report. */
static void assert_spawn_failed(const cli_exec_result *r, int err, int code) {
  if (r->spawn_error == 0 && r->exit_code == 127)
    return;
  assert_int_equal(r->spawn_error, err);
  assert_int_equal(r->exit_code, code);
}

static void run(cli_exec_request *rq, cli_exec_result *r) {
  cli_err e = {{0}};
  int rc = cli_exec_run(rq, r, &e);
  if (rc != 0)
    fail_msg("cli_exec_run: %d %s", rc, e.msg);
}

static void assert_group_gone(const cli_exec_result *r) {
  assert_true(r->pid > 0);
  errno = 0;
  if (kill(-r->pid, 0) == 0 || errno != ESRCH)
    fail_msg("process group %d still has members", r->pid);
}

static void simple(void **state) {
  (void)state;
  char *argv[] = {(char *)"echo", (char *)"hello", NULL};
  cli_exec_request rq = {.argv = argv};
  cli_exec_result r;
  run(&rq, &r);
  assert_int_equal(r.exit_code, 0);
  assert_int_equal(r.signal, 0);
  assert_int_equal(r.stopped, CLI_EXEC_RUN);
  assert_string_equal(cli_sbuf_str(&r.out.mem), "hello\n");
  assert_int_equal(r.out.total, 6);
  assert_null(r.out.path);
  assert_int_equal(r.err.total, 0);
  assert_false(r.leftovers);
  assert_group_gone(&r);
  cli_exec_result_discard(&r);
}

static void big_outputs_concurrently(void **state) {
  (void)state;
  /* 10 MiB on each stream at the same time, stderr first: a capture that
   * drained one stream at a time would deadlock on the other pipe. */
  char *argv[] = {(char *)"head -c 10485760 /dev/zero >&2 & "
                          "head -c 10485760 /dev/zero; wait",
                  NULL};
  cli_exec_request rq = {.argv = argv, .use_shell = true};
  cli_exec_result r;
  run(&rq, &r);
  assert_int_equal(r.exit_code, 0);
  assert_int_equal(r.out.total, 10 * MIB);
  assert_int_equal(r.err.total, 10 * MIB);
  assert_int_equal(r.out.mem.len, 10 * MIB);
  assert_int_equal(r.err.mem.len, 10 * MIB);
  assert_null(r.out.path);
  cli_exec_result_discard(&r);
}

static void spill(void **state) {
  (void)state;
  char *argv[] = {(char *)"seq 1 2000000; echo tail >&2", NULL};
  cli_exec_request rq = {
      .argv = argv, .use_shell = true, .max_memory = 1 * MIB};
  cli_exec_result r;
  run(&rq, &r);
  assert_int_equal(r.exit_code, 0);
  assert_non_null(r.out.path);
  assert_int_equal(r.out.mem.len, 0);
  struct stat st;
  assert_int_equal(stat(r.out.path, &st), 0);
  assert_int_equal((uint64_t)st.st_size, r.out.total);
  assert_true(r.out.total > 10 * MIB);
  assert_int_equal(st.st_mode & 0777, 0600);
  /* stderr stayed under the limit: in memory. */
  assert_null(r.err.path);
  assert_string_equal(cli_sbuf_str(&r.err.mem), "tail\n");
  /* The spill file holds exactly what seq wrote: check its last line. */
  FILE *f = fopen(r.out.path, "r");
  assert_non_null(f);
  assert_int_equal(fseek(f, -8, SEEK_END), 0);
  char last[16] = {0};
  assert_int_equal(fread(last, 1, 8, f), 8);
  fclose(f);
  assert_string_equal(last, "2000000\n");
  char *path = r.out.path;
  r.out.path = NULL;
  cli_exec_result_free(&r); /* free keeps the file... */
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(unlink(path), 0);
  ratchet_free(path);
  run(&rq, &r);
  char keep[256];
  snprintf(keep, sizeof keep, "%s", r.out.path);
  cli_exec_result_discard(&r); /* ...discard deletes it. */
  assert_int_equal(stat(keep, &st), -1);
}

static void stdin_feed(void **state) {
  (void)state;
  size_t n = 3 * MIB + 7;
  char *data = ratchet_malloc(n);
  for (size_t i = 0; i < n; i++)
    data[i] = (char)('a' + i % 26);
  char *cat[] = {(char *)"cat", NULL};
  cli_exec_request rq = {.argv = cat, .stdin_data = data, .stdin_len = n};
  cli_exec_result r;
  run(&rq, &r);
  assert_int_equal(r.stdin_written, n);
  assert_int_equal(r.out.mem.len, n);
  assert_memory_equal(r.out.mem.data, data, n);
  cli_exec_result_discard(&r);
  /* A command that stops reading: EPIPE, not an error. */
  char *head[] = {(char *)"head", (char *)"-c", (char *)"3", NULL};
  rq.argv = head;
  run(&rq, &r);
  assert_int_equal(r.exit_code, 0);
  assert_string_equal(cli_sbuf_str(&r.out.mem), "abc");
  assert_true(r.stdin_written < n);
  cli_exec_result_discard(&r);
  ratchet_free(data);
}

static void exit_codes_and_signals(void **state) {
  (void)state;
  cli_exec_result r;
  char *e3[] = {(char *)"exit 3", NULL};
  cli_exec_request rq = {.argv = e3, .use_shell = true};
  run(&rq, &r);
  assert_int_equal(r.exit_code, 3);
  assert_int_equal(r.signal, 0);
  cli_exec_result_discard(&r);

  char *usr1[] = {(char *)"kill -USR1 $$", NULL};
  rq.argv = usr1;
  run(&rq, &r);
  assert_int_equal(r.signal, SIGUSR1);
  assert_int_equal(r.exit_code, 128 + SIGUSR1);
  cli_exec_result_discard(&r);

  char *missing[] = {(char *)"/nonexistent/program", NULL};
  rq.argv = missing;
  rq.use_shell = false;
  run(&rq, &r);
  assert_spawn_failed(&r, -ENOENT, 127);
  cli_exec_result_discard(&r);

  /* Not executable (mode 0600), and executable but not a program. */
  const char *script = tu_write_temp(0, "#!/bin/sh\n", 10);
  char *notexec[] = {(char *)script, NULL};
  rq.argv = notexec;
  run(&rq, &r);
  assert_spawn_failed(&r, -EACCES, 126);
  cli_exec_result_discard(&r);
  const char *data = tu_write_temp(1, "\x7f\x01\x02garbage", 10);
  assert_int_equal(chmod(data, 0700), 0);
  notexec[0] = (char *)data;
  run(&rq, &r);
  assert_spawn_failed(&r, -ENOEXEC, 126);
  cli_exec_result_discard(&r);
  unlink(script);
  unlink(data);
}

static void sigpipe_default(void **state) {
  (void)state;
  /* The test ignores SIGPIPE, as the worker does; its commands must get
   * the default disposition back. */
  char *direct[] = {(char *)"sh", (char *)"-c", (char *)"trap -p PIPE; exit 0",
                    NULL};
  cli_exec_request rq = {.argv = direct};
  cli_exec_result r;
  run(&rq, &r);
  /* trap -p prints nothing for a signal at its default disposition, and
   * "trap -- '' PIPE" for an ignored one. */
  assert_string_equal(cli_sbuf_str(&r.out.mem), "");
  cli_exec_result_discard(&r);
}

static void env_cwd_shell_args(void **state) {
  (void)state;
  setenv("RATCHET_TEST_DROP", "x", 1);
  char *argv[] = {(char *)"echo \"$FOO|${RATCHET_TEST_DROP-unset}|$1|$2\"; "
                          "pwd",
                  (char *)"a b", (char *)"it's", NULL};
  char *set[] = {(char *)"FOO=bar=baz", NULL};
  char *unset[] = {(char *)"RATCHET_TEST_DROP", NULL};
  cli_exec_request rq = {.argv = argv,
                         .use_shell = true,
                         .env_set = set,
                         .env_unset = unset,
                         .cwd = "/"};
  cli_exec_result r;
  run(&rq, &r);
  assert_string_equal(cli_sbuf_str(&r.out.mem), "bar=baz|unset|a b|it's\n/\n");
  cli_exec_result_discard(&r);
  unsetenv("RATCHET_TEST_DROP");
  rq.cwd = "/nonexistent-dir";
  run(&rq, &r);
  assert_spawn_failed(&r, -ENOENT, 127);
  cli_exec_result_discard(&r);
}

static void timeout_kills_group(void **state) {
  (void)state;
  char *argv[] = {(char *)"sleep 30 & sleep 30; wait", NULL};
  cli_exec_request rq = {
      .argv = argv, .use_shell = true, .timeout_ms = 200, .kill_grace_ms = 500};
  cli_exec_result r;
  uint64_t t0 = ms_now();
  run(&rq, &r);
  uint64_t took = ms_now() - t0;
  assert_int_equal(r.stopped, CLI_EXEC_TIMEOUT);
  assert_int_equal(r.signal, SIGTERM);
  assert_true(took >= 200 && took < 3000);
  assert_group_gone(&r);
  cli_exec_result_discard(&r);
}

static void term_ignored_then_kill(void **state) {
  (void)state;
  char *argv[] = {(char *)"trap '' TERM; sleep 30 & sleep 30; wait", NULL};
  cli_exec_request rq = {
      .argv = argv, .use_shell = true, .timeout_ms = 100, .kill_grace_ms = 300};
  cli_exec_result r;
  uint64_t t0 = ms_now();
  run(&rq, &r);
  uint64_t took = ms_now() - t0;
  assert_int_equal(r.stopped, CLI_EXEC_TIMEOUT);
  assert_int_equal(r.signal, SIGKILL);
  assert_true(took >= 400 && took < 3000);
  assert_group_gone(&r);
  cli_exec_result_discard(&r);
}

static int polls;

static cli_exec_stop cancel_third(void *ctx) {
  (void)ctx;
  return ++polls >= 3 ? CLI_EXEC_CANCEL : CLI_EXEC_RUN;
}

static void cancel_by_poll(void **state) {
  (void)state;
  char *argv[] = {(char *)"sleep", (char *)"30", NULL};
  polls = 0;
  cli_exec_request rq = {
      .argv = argv, .poll = cancel_third, .kill_grace_ms = 500};
  cli_exec_result r;
  uint64_t t0 = ms_now();
  run(&rq, &r);
  assert_true(ms_now() - t0 < 2000);
  assert_int_equal(polls, 3);
  assert_int_equal(r.stopped, CLI_EXEC_CANCEL);
  assert_int_equal(r.signal, SIGTERM);
  assert_group_gone(&r);
  cli_exec_result_discard(&r);
}

static void leftovers_are_ended(void **state) {
  (void)state;
  /* A background job that closed the pipes, and one that holds them. */
  static const char *const scripts[] = {
      "sleep 30 >/dev/null 2>&1 & echo started",
      "sleep 30 & echo started",
  };
  for (size_t i = 0; i < TU_ARRAY_LEN(scripts); i++) {
    char *argv[] = {(char *)scripts[i], NULL};
    cli_exec_request rq = {
        .argv = argv, .use_shell = true, .kill_grace_ms = 300};
    cli_exec_result r;
    uint64_t t0 = ms_now();
    run(&rq, &r);
    assert_true(ms_now() - t0 < 3000);
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(r.stopped, CLI_EXEC_RUN);
    assert_true(r.leftovers);
    assert_string_equal(cli_sbuf_str(&r.out.mem), "started\n");
    assert_group_gone(&r);
    cli_exec_result_discard(&r);
  }
}

static void bad_request(void **state) {
  (void)state;
  cli_exec_result r;
  cli_err e = {{0}};
  char *none[] = {NULL};
  cli_exec_request rq = {.argv = none};
  assert_int_equal(cli_exec_run(&rq, &r, &e), -EINVAL);
  assert_msg_has(e.msg, "empty argv");
}

int test_exec(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(simple),
      cmocka_unit_test(big_outputs_concurrently),
      cmocka_unit_test(spill),
      cmocka_unit_test(stdin_feed),
      cmocka_unit_test(exit_codes_and_signals),
      cmocka_unit_test(sigpipe_default),
      cmocka_unit_test(env_cwd_shell_args),
      cmocka_unit_test(timeout_kills_group),
      cmocka_unit_test(term_ignored_then_kill),
      cmocka_unit_test(cancel_by_poll),
      cmocka_unit_test(leftovers_are_ended),
      cmocka_unit_test(bad_request),
  };
  return cmocka_run_group_tests_name("exec", tests, setup, NULL);
}
