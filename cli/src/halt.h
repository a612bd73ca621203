/*
 * halt.h - `--halt WHEN,COND=X`, with GNU parallel's meaning.
 *
 *   WHEN   never  run every task whatever happens (the default)
 *          soon   start no new task; let running tasks finish
 *          now    kill running tasks (their process groups) at once
 *   COND   fail=N      when N tasks have failed (N >= 1)
 *          fail=P%     when P% of all tasks have failed, if their number
 *                      is known (inputs from ::: or a file read to the
 *                      end); while it is not, P% of the finished tasks,
 *                      once at least 3 have finished (0 < P <= 100)
 *          success=N|P%  the same, counting successes
 *          done=N|P%     the same, counting finished tasks
 * Also GNU parallel's old forms: "0" (never), "1" (soon,fail=1) and
 * "2" (now,fail=1). "never" takes no condition.
 */
#ifndef RATCHET_CLI_HALT_H
#define RATCHET_CLI_HALT_H

#include <stdbool.h>
#include <stdint.h>

#include "diag.h"

typedef enum cli_halt_when {
  CLI_HALT_NEVER = 0,
  CLI_HALT_SOON = 1,
  CLI_HALT_NOW = 2
} cli_halt_when;

typedef enum cli_halt_on {
  CLI_HALT_ON_FAIL = 0,
  CLI_HALT_ON_SUCCESS = 1,
  CLI_HALT_ON_DONE = 2
} cli_halt_on;

/* The smallest number of finished tasks before a percentage can trigger. */
#define CLI_HALT_PERCENT_MIN_DONE 3

typedef struct cli_halt {
  cli_halt_when when;
  cli_halt_on on;
  bool is_percent;
  uint64_t count; /* when !is_percent */
  double percent; /* when is_percent: 0 < percent <= 100 */
} cli_halt;

#define CLI_HALT_INIT                                                          \
  { CLI_HALT_NEVER, CLI_HALT_ON_FAIL, false, 0, 0.0 }

/* Parses the value of flag ("--halt"). 0 and *h; -EINVAL and a message
 * naming the bad part (*h unchanged). */
int cli_parse_halt(const char *flag, const char *s, cli_halt *h, cli_err *e);

/* True when the condition of h holds after these counts of finished tasks;
 * total is the number of tasks of the run, 0 while unknown (a pure helper
 * for the orchestrator's wiring and for tests). */
bool cli_halt_triggered(const cli_halt *h, uint64_t failed, uint64_t succeeded,
                        uint64_t total);

#endif
