/*
 * run_progress.h - the progress line of `ratchet run` on stderr: tasks
 * done of the total, failed, retried, cached, the rate and the time left.
 */
#ifndef RATCHET_CLI_RUN_PROGRESS_H
#define RATCHET_CLI_RUN_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

/* The counters the line shows, owned by the driver and read on each
 * redraw. total is 0 while the number of tasks is not known. */
typedef struct cli_progress_counts {
  uint64_t done, total, failed, retried, cached;
} cli_progress_counts;

typedef struct cli_progress cli_progress;

/*
 * Starts redrawing the line on fd every 100 ms (on a terminal; elsewhere a
 * plain line every second). counts is borrowed until cli_progress_close.
 * 0 and *out; -ENOMEM or libuv's error.
 */
int cli_progress_new(uv_loop_t *loop, int fd, const cli_progress_counts *counts,
                     cli_progress **out);

/* Erases the line (before other output goes to the terminal); the next
 * tick draws it again. */
void cli_progress_clear(cli_progress *p);

/* Draws the final line (with a newline), stops, and frees p once its
 * timer is closed. NULL is a no-op. */
void cli_progress_close(cli_progress *p);

#endif
