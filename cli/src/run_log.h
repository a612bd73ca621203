/*
 * run_log.h - which orchestrator events `ratchet run` logs, and at which
 * level (docs/observability.md, "Logs"):
 *
 *   debug  dispatches, attempts that succeeded or failed, workers starting
 *          and ready, worker exits while the run is ending, repeated
 *          worker stderr lines
 *   info   retries, attempts lost with their worker, restarts, recycles,
 *          clean worker exits, breaker changes back towards closed, Log
 *          frames of level info
 *   warn   workers killed by a signal or exiting with a failure, hung
 *          workers, a breaker opening, worker stderr lines (first time)
 *   error  Log frames of level error (the pool failing is the run's final
 *          error line, written by the driver)
 *
 * The final outcome of each task is logged by the driver (run.c), which
 * knows whether the task's own stderr already explains it.
 */
#ifndef RATCHET_CLI_RUN_LOG_H
#define RATCHET_CLI_RUN_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"
#include "ratchet/events.h"

/* The events cli_run_log_event has something to say about. */
uint64_t cli_run_log_types(void);

/*
 * Logs ev. seq and label name the task (0 / NULL when unknown or not a
 * task event); ending: the run is closing, so worker exits are expected.
 */
void cli_run_log_event(cli_log *l, const ratchet_event *ev, uint64_t seq,
                       const char *label, bool ending);

#endif
