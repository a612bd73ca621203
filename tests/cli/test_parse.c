/*
 * test_parse.c - durations, sizes, numbers, --halt, --breaker, --backoff
 * and --jitter: every accepted form and the messages of refusals, which
 * must name the flag and the bad value.
 */
#include <errno.h>
#include <string.h>

#include "backoff_opts.h"
#include "breaker_spec.h"
#include "diag.h"
#include "duration.h"
#include "halt.h"
#include "testutil.h"

#define MS UINT64_C(1000000)
#define S  UINT64_C(1000000000)

static void duration_ok(void **state) {
  (void)state;
  static const struct {
    const char *in;
    uint64_t ns;
  } cases[] = {
      {"250ms", 250 * MS},  {"2s", 2 * S},
      {"1m", 60 * S},       {"1h", 3600 * S},
      {"30", 30 * S},       {"0.5", 500 * MS},
      {"1.5s", 1500 * MS},  {"1m30s", 90 * S},
      {"1h2m3s", 3723 * S}, {"0", 0},
      {"10us", 10000},      {"7ns", 7},
      {"1d", 86400 * S},    {"0.25h", 900 * S},
      {"2.", 2 * S},        {".5s", 500 * MS},
  };
  for (size_t i = 0; i < TU_ARRAY_LEN(cases); i++) {
    uint64_t ns = 42;
    cli_err e = {{0}};
    if (cli_parse_duration("--timeout", cases[i].in, &ns, &e) != 0)
      fail_msg("'%s' refused: %s", cases[i].in, e.msg);
    assert_int_equal(ns, cases[i].ns);
  }
}

static void duration_bad(void **state) {
  (void)state;
  static const char *const bad[] = {"",
                                    "x",
                                    "5x",
                                    "-1s",
                                    "1 s",
                                    "s",
                                    "1m30",
                                    "1.2.3s",
                                    "ms",
                                    "1e3",
                                    "99999999999999999999s",
                                    "300000d"};
  for (size_t i = 0; i < TU_ARRAY_LEN(bad); i++) {
    uint64_t ns = 42;
    cli_err e = {{0}};
    assert_int_equal(cli_parse_duration("--timeout", bad[i], &ns, &e), -EINVAL);
    assert_int_equal(ns, 42);
    assert_msg_has(e.msg, "--timeout");
    assert_msg_has(e.msg, bad[i]);
  }
}

static void duration_message_escapes(void **state) {
  (void)state;
  uint64_t ns;
  cli_err e = {{0}};
  assert_int_equal(cli_parse_duration("--timeout", "1\n\x1b[2J", &ns, &e),
                   -EINVAL);
  assert_null(strchr(e.msg, '\n'));
  assert_null(strchr(e.msg, '\x1b'));
  assert_msg_has(e.msg, "'1\\n\\x1b[2J'");
}

/* Values are cut at 64 bytes; paths are shown whole up to 384 bytes (a
 * user needs them to find the file), and past that keep their tail. */
static void shown_values_and_paths(void **state) {
  (void)state;
  char show[CLI_SHOW_SIZE], pshow[CLI_SHOW_PATH_SIZE], long_s[1200];
  memset(long_s, 'a', sizeof long_s - 1);
  long_s[sizeof long_s - 1] = '\0';
  const char *shown = cli_show(long_s, show);
  assert_int_equal(strlen(shown), 64 + 3);
  assert_string_equal(shown + 64, "...");
  const char *path = "/check/work/main/build-asan/tests/cli/"
                     "ratchet-test-plugin-abi99.so";
  assert_string_equal(cli_show_path(path, pshow), path);
  memcpy(long_s + sizeof long_s - 9, "/file.so", 9);
  shown = cli_show_path(long_s, pshow);
  assert_int_equal(strlen(shown), CLI_SHOW_PATH_MAX + 3);
  assert_non_null(strstr(shown, "..."));
  assert_string_equal(shown + strlen(shown) - 8, "/file.so");
  assert_string_equal(cli_show_path("a\nb'c", pshow), "a\\nb\\'c");
}

static void duration_format(void **state) {
  (void)state;
  char buf[64];
  assert_string_equal(cli_format_duration(0, buf), "0s");
  assert_string_equal(cli_format_duration(90 * S, buf), "1m30s");
  assert_string_equal(cli_format_duration(250 * MS, buf), "250ms");
  assert_string_equal(cli_format_duration(UINT64_MAX, buf),
                      "213503d23h34m33s709ms551us615ns");
}

static void size_ok_and_bad(void **state) {
  (void)state;
  static const struct {
    const char *in;
    uint64_t v;
  } ok[] = {
      {"512", 512},
      {"64K", 64 << 10},
      {"64k", 64 << 10},
      {"1KiB", 1024},
      {"1kb", 1024},
      {"16M", 16 << 20},
      {"1.5M", 3 << 19},
      {"2G", UINT64_C(2) << 30},
      {"1T", UINT64_C(1) << 40},
      {"7B", 7},
  };
  for (size_t i = 0; i < TU_ARRAY_LEN(ok); i++) {
    uint64_t v = 0;
    cli_err e = {{0}};
    if (cli_parse_size("--output-buffer", ok[i].in, &v, &e) != 0)
      fail_msg("'%s' refused: %s", ok[i].in, e.msg);
    assert_int_equal(v, ok[i].v);
  }
  static const char *const bad[] = {"",   "M",   "12Q",
                                    "-1", "1 M", "99999999999T"};
  for (size_t i = 0; i < TU_ARRAY_LEN(bad); i++) {
    uint64_t v = 9;
    cli_err e = {{0}};
    assert_int_equal(cli_parse_size("--output-buffer", bad[i], &v, &e),
                     -EINVAL);
    assert_int_equal(v, 9);
    assert_msg_has(e.msg, "--output-buffer");
  }
}

static void uint_and_percent(void **state) {
  (void)state;
  uint64_t v;
  double p;
  cli_err e = {{0}};
  assert_int_equal(cli_parse_uint("--retries", "3", 0, 10, &v, &e), 0);
  assert_int_equal(v, 3);
  assert_int_equal(cli_parse_uint("--retries", "11", 0, 10, &v, &e), -EINVAL);
  assert_msg_has(e.msg, "--retries: '11' is out of range (0 to 10)");
  assert_int_equal(cli_parse_uint("--retries", "3x", 0, 10, &v, &e), -EINVAL);
  assert_msg_has(e.msg, "'3x'");
  assert_int_equal(
      cli_parse_uint("--retries", "184467440737095516160", 0, 10, &v, &e),
      -EINVAL);
  assert_int_equal(cli_parse_percent("rate", "50%", &p, &e), 0);
  assert_true(p == 50.0);
  assert_int_equal(cli_parse_percent("rate", "12.5", &p, &e), 0);
  assert_true(p == 12.5);
  assert_int_equal(cli_parse_percent("rate", "0%", &p, &e), -EINVAL);
  assert_int_equal(cli_parse_percent("rate", "101%", &p, &e), -EINVAL);
  assert_int_equal(cli_parse_percent("rate", "5%%", &p, &e), -EINVAL);
}

/* Field by field: the structs have padding that assignment leaves
 * undefined. */
static void assert_halt_same(const cli_halt *a, const cli_halt *b) {
  assert_int_equal(a->when, b->when);
  assert_int_equal(a->on, b->on);
  assert_int_equal(a->is_percent, b->is_percent);
  assert_int_equal(a->count, b->count);
  assert_true(a->percent == b->percent);
}

static void assert_breaker_same(const cli_breaker_spec *a,
                                const cli_breaker_spec *b) {
  assert_int_equal(a->enabled, b->enabled);
  assert_true(a->rate == b->rate);
  assert_int_equal(a->time_window, b->time_window);
  assert_int_equal(a->window_count, b->window_count);
  assert_int_equal(a->window_ns, b->window_ns);
  assert_int_equal(a->min_calls, b->min_calls);
  assert_int_equal(a->consecutive, b->consecutive);
  assert_int_equal(a->open_ns, b->open_ns);
  assert_int_equal(a->probes, b->probes);
  assert_int_equal(a->mode, b->mode);
}

static void halt_forms(void **state) {
  (void)state;
  cli_halt h;
  cli_err e = {{0}};
  assert_int_equal(cli_parse_halt("--halt", "never", &h, &e), 0);
  assert_int_equal(h.when, CLI_HALT_NEVER);
  assert_int_equal(cli_parse_halt("--halt", "now,fail=1", &h, &e), 0);
  assert_int_equal(h.when, CLI_HALT_NOW);
  assert_int_equal(h.on, CLI_HALT_ON_FAIL);
  assert_int_equal(h.count, 1);
  assert_false(h.is_percent);
  assert_int_equal(cli_parse_halt("--halt", "soon,fail=20%", &h, &e), 0);
  assert_int_equal(h.when, CLI_HALT_SOON);
  assert_true(h.is_percent);
  assert_true(h.percent == 20.0);
  assert_int_equal(cli_parse_halt("--halt", "now,success=3", &h, &e), 0);
  assert_int_equal(h.on, CLI_HALT_ON_SUCCESS);
  assert_int_equal(cli_parse_halt("--halt", "soon,done=10", &h, &e), 0);
  assert_int_equal(h.on, CLI_HALT_ON_DONE);
  assert_int_equal(cli_parse_halt("--halt", "2", &h, &e), 0);
  assert_int_equal(h.when, CLI_HALT_NOW);
  assert_int_equal(h.count, 1);
  assert_int_equal(cli_parse_halt("--halt", "1", &h, &e), 0);
  assert_int_equal(h.when, CLI_HALT_SOON);
  static const char *const bad[] = {"",
                                    "later,fail=1",
                                    "now",
                                    "now,",
                                    "now,fail",
                                    "now,oops=1",
                                    "now,fail=0",
                                    "now,fail=x",
                                    "soon,fail=0%",
                                    "soon,fail=120%",
                                    "3"};
  for (size_t i = 0; i < TU_ARRAY_LEN(bad); i++) {
    cli_halt keep = h;
    assert_int_equal(cli_parse_halt("--halt", bad[i], &h, &e), -EINVAL);
    assert_halt_same(&keep, &h);
    assert_msg_has(e.msg, "--halt");
  }
}

static void halt_triggers(void **state) {
  (void)state;
  cli_halt h;
  cli_err e = {{0}};
  assert_int_equal(cli_parse_halt("--halt", "now,fail=2", &h, &e), 0);
  assert_false(cli_halt_triggered(&h, 1, 100, 0));
  assert_true(cli_halt_triggered(&h, 2, 0, 0));
  assert_int_equal(cli_parse_halt("--halt", "soon,fail=50%", &h, &e), 0);
  assert_false(cli_halt_triggered(&h, 2, 0, 0)); /* fewer than 3 done */
  assert_true(cli_halt_triggered(&h, 2, 1, 0));
  assert_false(cli_halt_triggered(&h, 2, 1, 10)); /* 20% of 10 */
  assert_true(cli_halt_triggered(&h, 5, 0, 10));
  assert_int_equal(cli_parse_halt("--halt", "now,done=3", &h, &e), 0);
  assert_true(cli_halt_triggered(&h, 1, 2, 0));
  cli_halt never = CLI_HALT_INIT;
  assert_false(cli_halt_triggered(&never, 1000, 0, 0));
}

static void breaker_specs(void **state) {
  (void)state;
  cli_breaker_spec b;
  cli_err e = {{0}};
  assert_int_equal(cli_parse_breaker("--breaker", "off", &b, &e), 0);
  assert_false(b.enabled);
  assert_int_equal(cli_parse_breaker("--breaker", "on", &b, &e), 0);
  assert_true(b.enabled);
  assert_true(b.rate == 50.0);
  assert_int_equal(b.window_count, 20);
  assert_int_equal(b.min_calls, 10);
  assert_int_equal(b.open_ns, 30 * S);
  assert_int_equal(b.mode, CLI_BREAKER_WAIT);
  assert_int_equal(
      cli_parse_breaker("--breaker",
                        "rate=25%,window=50,min=5,open=1m,probes=3,mode=fail,"
                        "consecutive=4",
                        &b, &e),
      0);
  assert_true(b.rate == 25.0);
  assert_false(b.time_window);
  assert_int_equal(b.window_count, 50);
  assert_int_equal(b.min_calls, 5);
  assert_int_equal(b.open_ns, 60 * S);
  assert_int_equal(b.probes, 3);
  assert_int_equal(b.consecutive, 4);
  assert_int_equal(b.mode, CLI_BREAKER_FAIL);
  assert_int_equal(
      cli_parse_breaker("--breaker", "window=30s,open=never", &b, &e), 0);
  assert_true(b.time_window);
  assert_int_equal(b.window_ns, 30 * S);
  assert_int_equal(b.open_ns, CLI_BREAKER_OPEN_NEVER);
  /* A small count window lowers the default minimum with it. */
  assert_int_equal(cli_parse_breaker("--breaker", "window=4", &b, &e), 0);
  assert_int_equal(b.min_calls, 4);
  static const struct {
    const char *in, *needle;
  } bad[] = {
      {"", "empty"},
      {"rate", "'rate' is not KEY=VALUE"},
      {"rate=", "'rate=' is not KEY=VALUE"},
      {"rate=0%", "--breaker rate"},
      {"window=0", "--breaker window"},
      {"window=500ms", "out of range (1s to 1h)"},
      {"min=11,window=10", "min=11 is larger than window=10"},
      {"open=0", "longer than 0"},
      {"open=soon", "--breaker open"},
      {"probes=0", "--breaker probes"},
      {"mode=maybe", "invalid mode 'maybe'"},
      {"colour=red", "unknown key 'colour'"},
  };
  for (size_t i = 0; i < TU_ARRAY_LEN(bad); i++) {
    cli_breaker_spec keep = b;
    assert_int_equal(cli_parse_breaker("--breaker", bad[i].in, &b, &e),
                     -EINVAL);
    assert_breaker_same(&keep, &b);
    assert_msg_has(e.msg, bad[i].needle);
  }
}

static void backoff_and_jitter(void **state) {
  (void)state;
  cli_backoff_kind k;
  cli_jitter j;
  cli_err e = {{0}};
  assert_int_equal(cli_parse_backoff_kind("--backoff", "exp", &k, &e), 0);
  assert_int_equal(k, CLI_BACKOFF_EXPONENTIAL);
  assert_int_equal(cli_parse_backoff_kind("--backoff", "exponential", &k, &e),
                   0);
  assert_int_equal(cli_parse_backoff_kind("--backoff", "linear", &k, &e), 0);
  assert_int_equal(k, CLI_BACKOFF_LINEAR);
  assert_int_equal(cli_parse_backoff_kind("--backoff", "constant", &k, &e), 0);
  assert_int_equal(cli_parse_backoff_kind("--backoff", "decorrelated", &k, &e),
                   0);
  assert_int_equal(k, CLI_BACKOFF_DECORRELATED);
  assert_string_equal(cli_backoff_kind_name(k), "decorrelated");
  assert_int_equal(cli_parse_backoff_kind("--backoff", "fib", &k, &e), -EINVAL);
  assert_msg_has(e.msg, "--backoff: invalid backoff 'fib'");
  assert_int_equal(cli_parse_jitter("--jitter", "full", &j, &e), 0);
  assert_int_equal(j.kind, CLI_JITTER_FULL);
  assert_int_equal(cli_parse_jitter("--jitter", "equal", &j, &e), 0);
  assert_int_equal(j.kind, CLI_JITTER_EQUAL);
  assert_int_equal(cli_parse_jitter("--jitter", "none", &j, &e), 0);
  assert_int_equal(j.kind, CLI_JITTER_NONE);
  assert_int_equal(cli_parse_jitter("--jitter", "20%", &j, &e), 0);
  assert_int_equal(j.kind, CLI_JITTER_PROPORTIONAL);
  assert_true(j.percent == 20.0);
  assert_string_equal(cli_jitter_kind_name(j.kind), "proportional");
  assert_int_equal(cli_parse_jitter("--jitter", "some", &j, &e), -EINVAL);
  assert_msg_has(e.msg, "--jitter: invalid jitter 'some'");
  assert_int_equal(cli_parse_jitter("--jitter", "200%", &j, &e), -EINVAL);
}

int test_parse(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(duration_ok),
      cmocka_unit_test(duration_bad),
      cmocka_unit_test(duration_message_escapes),
      cmocka_unit_test(shown_values_and_paths),
      cmocka_unit_test(duration_format),
      cmocka_unit_test(size_ok_and_bad),
      cmocka_unit_test(uint_and_percent),
      cmocka_unit_test(halt_forms),
      cmocka_unit_test(halt_triggers),
      cmocka_unit_test(breaker_specs),
      cmocka_unit_test(backoff_and_jitter),
  };
  return cmocka_run_group_tests_name("parse", tests, NULL, NULL);
}
