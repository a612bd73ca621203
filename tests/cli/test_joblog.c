/*
 * test_joblog.c - the job log (joblog.c): the exact line format, one
 * write per line, reading back done and failed seqs, the last line wins,
 * a last line cut short anywhere (as kill -9 leaves it), GNU parallel's own
 * logs, and refusing a damaged line in the middle.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "joblog.h"
#include "ratchet/alloc.h"
#include "testutil.h"

static char *read_file(const char *path, size_t *len) {
  int fd = open(path, O_RDONLY);
  assert_true(fd >= 0);
  struct stat st;
  assert_int_equal(fstat(fd, &st), 0);
  char *b = ratchet_malloc((size_t)st.st_size + 1);
  assert_int_equal(read(fd, b, (size_t)st.st_size), st.st_size);
  b[st.st_size] = '\0';
  close(fd);
  *len = (size_t)st.st_size;
  return b;
}

static void format_line(void **state) {
  (void)state;
  cli_sbuf b = CLI_SBUF_INIT;
  cli_joblog_entry en = {.seq = 12,
                         .start_ms = 1700000000123u,
                         .runtime_ms = 2050,
                         .send = 5,
                         .receive = 4096,
                         .exitval = 3,
                         .signal = 0,
                         .command = "echo 'a\tb'\nx\\y",
                         .attempts = 2,
                         .cached = true};
  assert_int_equal(cli_joblog_format(&b, &en), 0);
  assert_string_equal(cli_sbuf_str(&b),
                      "12\t:\t1700000000.123\t2.050\t5\t4096\t3\t0\t"
                      "echo 'a\\tb'\\nx\\\\y\t2\t1\n");
  cli_sbuf_free(&b);
}

static void write_and_read(void **state) {
  (void)state;
  const char *path = tu_write_temp(2, "", 0);
  cli_joblog *j;
  cli_err e = {{0}};
  assert_int_equal(cli_joblog_open("--joblog", path, false, &j, &e), 0);
  cli_joblog_entry en = {.command = "true", .attempts = 1};
  for (uint64_t seq = 1; seq <= 5; seq++) {
    en.seq = seq;
    en.exitval = seq == 2 ? 1 : 0;
    en.signal = seq == 4 ? 9 : 0;
    assert_int_equal(cli_joblog_write(j, &en), 0);
  }
  /* seq 2 retried later and succeeded: the last line wins. */
  en.seq = 2;
  en.exitval = 0;
  assert_int_equal(cli_joblog_write(j, &en), 0);
  cli_joblog_close(j);

  size_t len;
  char *text = read_file(path, &len);
  assert_int_equal(strncmp(text, CLI_JOBLOG_HEADER, strlen(CLI_JOBLOG_HEADER)),
                   0);
  ratchet_free(text);

  cli_joblog_state *st;
  assert_int_equal(cli_joblog_read("--joblog", path, &st, &e), 0);
  assert_int_equal(cli_joblog_lookup(st, 1), CLI_JOBLOG_OK);
  assert_int_equal(cli_joblog_lookup(st, 2), CLI_JOBLOG_OK);
  assert_int_equal(cli_joblog_lookup(st, 3), CLI_JOBLOG_OK);
  assert_int_equal(cli_joblog_lookup(st, 4), CLI_JOBLOG_FAILED);
  assert_int_equal(cli_joblog_lookup(st, 6), CLI_JOBLOG_ABSENT);
  uint64_t ok, failed;
  cli_joblog_counts(st, &ok, &failed);
  assert_int_equal(ok, 4);
  assert_int_equal(failed, 1);
  /* --resume skips every recorded seq; --resume-failed reruns 4. */
  assert_true(cli_joblog_skip(st, 4, false));
  assert_false(cli_joblog_skip(st, 4, true));
  assert_true(cli_joblog_skip(st, 1, true));
  assert_false(cli_joblog_skip(st, 6, false));
  cli_joblog_state_free(st);

  /* Reopening without keep empties it; with keep appends. */
  assert_int_equal(cli_joblog_open("--joblog", path, true, &j, &e), 0);
  en.seq = 9;
  assert_int_equal(cli_joblog_write(j, &en), 0);
  cli_joblog_close(j);
  assert_int_equal(cli_joblog_read("--joblog", path, &st, &e), 0);
  assert_int_equal(cli_joblog_lookup(st, 1), CLI_JOBLOG_OK);
  assert_int_equal(cli_joblog_lookup(st, 9), CLI_JOBLOG_OK);
  cli_joblog_state_free(st);
  assert_int_equal(cli_joblog_open("--joblog", path, false, &j, &e), 0);
  cli_joblog_close(j);
  text = read_file(path, &len);
  assert_string_equal(text, CLI_JOBLOG_HEADER);
  ratchet_free(text);
  unlink(path);
}

/* Every prefix of a log whose last line is cut: the cut line never counts,
 * and reopening with keep cuts it off before appending. */
static void cut_anywhere(void **state) {
  (void)state;
  cli_sbuf full = CLI_SBUF_INIT;
  assert_int_equal(cli_sbuf_adds(&full, CLI_JOBLOG_HEADER), 0);
  cli_joblog_entry en = {.command = "gzip -9 'x y'", .attempts = 1};
  size_t line_start[4];
  for (uint64_t seq = 1; seq <= 3; seq++) {
    line_start[seq] = full.len;
    en.seq = seq;
    assert_int_equal(cli_joblog_format(&full, &en), 0);
  }
  for (size_t cut = line_start[3] + 1; cut < full.len; cut++) {
    const char *path = tu_write_temp(2, full.data, cut);
    cli_joblog_state *st;
    cli_err e = {{0}};
    assert_int_equal(cli_joblog_read("--joblog", path, &st, &e), 0);
    assert_int_equal(cli_joblog_lookup(st, 2), CLI_JOBLOG_OK);
    if (cli_joblog_lookup(st, 3) != CLI_JOBLOG_ABSENT)
      fail_msg("a line cut at byte %zu counted as done", cut);
    cli_joblog_state_free(st);
    cli_joblog *j;
    assert_int_equal(cli_joblog_open("--joblog", path, true, &j, &e), 0);
    en.seq = 3;
    assert_int_equal(cli_joblog_write(j, &en), 0);
    cli_joblog_close(j);
    size_t len;
    char *text = read_file(path, &len);
    assert_int_equal(len, full.len);
    assert_memory_equal(text, full.data, len);
    ratchet_free(text);
    unlink(path);
  }
  cli_sbuf_free(&full);
}

static void parallel_log_and_damage(void **state) {
  (void)state;
  const char gnu[] =
      "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\t"
      "Command\n"
      "1\t:\t1700000000.000\t0.010\t0\t2\t0\t0\techo a\n"
      "2\t:\t1700000000.010\t0.010\t0\t0\t-1\t0\techo\tb\n";
  const char *path = tu_write_temp(2, gnu, sizeof gnu - 1);
  cli_joblog_state *st;
  cli_err e = {{0}};
  assert_int_equal(cli_joblog_read("--joblog", path, &st, &e), 0);
  assert_int_equal(cli_joblog_lookup(st, 1), CLI_JOBLOG_OK);
  assert_int_equal(cli_joblog_lookup(st, 2), CLI_JOBLOG_FAILED);
  cli_joblog_state_free(st);
  unlink(path);

  const char damaged[] = "Seq\tHost\n"
                         "1\t:\t0.0\t0.0\t0\t0\t0\t0\tx\t1\t0\n"
                         "garbage line\n"
                         "3\t:\t0.0\t0.0\t0\t0\t0\t0\tx\t1\t0\n";
  path = tu_write_temp(2, damaged, sizeof damaged - 1);
  assert_int_equal(cli_joblog_read("--joblog", path, &st, &e), -EINVAL);
  char want[128];
  snprintf(want, sizeof want, "%s:3: not a job log line", path);
  assert_msg_has(e.msg, want);
  unlink(path);

  /* A missing log is an empty one. */
  assert_int_equal(cli_joblog_read("--joblog", "/nonexistent-joblog", &st, &e),
                   0);
  assert_int_equal(cli_joblog_lookup(st, 1), CLI_JOBLOG_ABSENT);
  cli_joblog_state_free(st);

  cli_joblog *j;
  assert_int_equal(
      cli_joblog_open("--joblog", "/nonexistent/dir/log", false, &j, &e),
      -ENOENT);
  assert_msg_has(e.msg, "--joblog: cannot write '/nonexistent/dir/log'");
}

int test_joblog(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(format_line),
      cmocka_unit_test(write_and_read),
      cmocka_unit_test(cut_anywhere),
      cmocka_unit_test(parallel_log_and_damage),
  };
  return cmocka_run_group_tests_name("joblog", tests, NULL, NULL);
}
