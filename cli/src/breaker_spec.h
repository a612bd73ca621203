/*
 * breaker_spec.h - `--breaker SPEC`: when `ratchet run` stops launching
 * tasks because too many fail, and what happens to the rest.
 *
 * SPEC is "on", "off", or comma-separated KEY=VALUE pairs, each optional:
 *   rate=P%        open when the failure rate over the window reaches P%
 *                  (0 < P <= 100)                                   [50%]
 *   window=N       the window: the last N finished tasks (1..100000),
 *   window=DUR     or the tasks finished in the last DUR (a duration,
 *                  1s..1h, in one-second buckets)                     [20]
 *   min=N          no verdict before N tasks are in the window
 *                  (1..100000, at most N of a count window)           [10]
 *   consecutive=N  also open after N failures in a row (0: off)        [0]
 *   open=DUR       how long to stay open before probing; "never" keeps
 *                  it open for the rest of the run                   [30s]
 *   probes=N       tasks let through when half-open; it closes when
 *                  they all succeed and opens again otherwise (1..1000)[1]
 *   mode=wait      tasks meeting an open breaker wait for it to
 *                  half-open                                      [wait]
 *   mode=fail      they fail at once with status "breaker-open"
 *                  (with open=never: fail the rest of the run fast)
 * The options map one to one onto ratchet_breaker_options
 * (ratchet/breaker.h): rate -> failure_rate_threshold, window ->
 * window/window_size/bucket_ns, min -> minimum_calls, consecutive ->
 * consecutive_failures, open -> open_duration_ns, probes ->
 * permitted_calls_in_half_open.
 */
#ifndef RATCHET_CLI_BREAKER_SPEC_H
#define RATCHET_CLI_BREAKER_SPEC_H

#include <stdbool.h>
#include <stdint.h>

#include "diag.h"

typedef enum cli_breaker_mode {
  CLI_BREAKER_WAIT = 0,
  CLI_BREAKER_FAIL = 1
} cli_breaker_mode;

/* open_ns value meaning "never probe again". */
#define CLI_BREAKER_OPEN_NEVER UINT64_MAX

typedef struct cli_breaker_spec {
  bool enabled;
  double rate;      /* percent */
  bool time_window; /* window_ns is set, else window_count */
  uint32_t window_count;
  uint64_t window_ns;
  uint32_t min_calls;
  uint32_t consecutive; /* 0: off */
  uint64_t open_ns;     /* or CLI_BREAKER_OPEN_NEVER */
  uint32_t probes;
  cli_breaker_mode mode;
} cli_breaker_spec;

/* clang-format off */
#define CLI_BREAKER_SPEC_INIT {                                                 \
    .enabled = false, .rate = 50.0, .time_window = false,                      \
    .window_count = 20, .window_ns = 0, .min_calls = 10, .consecutive = 0,     \
    .open_ns = UINT64_C(30000000000), .probes = 1, .mode = CLI_BREAKER_WAIT}
/* clang-format on */

/* Parses SPEC for flag ("--breaker"). 0 and *b (enabled unless "off");
 * -EINVAL and a message naming the key and value (*b unchanged). */
int cli_parse_breaker(const char *flag, const char *s, cli_breaker_spec *b,
                      cli_err *e);

#endif
