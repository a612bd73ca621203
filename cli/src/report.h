/*
 * report.h - `ratchet run --report FILE.html`: one self-contained HTML
 * page about the run, written at its end (after SIGINT too).
 *
 * The page needs nothing but itself: inline CSS, inline SVG, no script,
 * no font, no image, no link to anything (its icon is an empty data: URL
 * so that the browser does not ask for /favicon.ico). It shows:
 *
 *  - a summary: the command, start, duration, workers, the exit status,
 *    tasks by outcome, attempts, retries;
 *  - a timeline: one row per worker, one bar per attempt coloured by its
 *    status (ok, failed, timeout, lost, other), retries and lost attempts
 *    marked above the bars, worker exits and restarts as ticks, breaker
 *    changes as dashed lines; each bar has a tooltip (SVG <title>). Past
 *    4,000 attempts a row is drawn per pixel column instead (the worst
 *    status in each column wins), so the page stays small;
 *  - throughput: tasks finished per second, in up to 60 bars, failures
 *    stacked in red;
 *  - a run-time histogram of the tasks' last attempts, in
 *    ratchet/accounting.h's power-of-two buckets, with p50 / p90 / p99;
 *  - a table per task kind: counts by status, cached, attempts, retries,
 *    p50 / p99 / max run time;
 *  - the slowest tasks, and the failures (up to record.h's limit) with
 *    their error and the last lines of their stderr.
 *
 * Every text from the run (commands, inputs, errors, stderr) is
 * HTML-escaped. Written to FILE.tmp and renamed over FILE.
 */
#ifndef RATCHET_CLI_REPORT_H
#define RATCHET_CLI_REPORT_H

#include <stdint.h>

#include "diag.h"
#include "record.h"

/* What the record does not know about the run. Borrowed for the call. */
typedef struct cli_report_info {
  const char *command; /* the command template as the user gave it */
  uint32_t jobs;
  int exit_status; /* what ratchet run exits with */
  int signal;      /* the SIGINT/SIGTERM that stopped it; 0 */
} cli_report_info;

/* Writes the report of r to path. 0, or a negated errno with the message
 * in e (which names --report and the path). */
int cli_report_write(const cli_rec *r, const cli_report_info *info,
                     const char *path, cli_err *e);

#endif
